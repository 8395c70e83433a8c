// The image formats the API accepts, told from a file's leading bytes. The table is the server's own
// (service/inference/images.py SIGNATURES), read from the vision model's input_schema.signatures, so the
// page and the API never disagree. The API rejects a whole batch when one file is not an image (415), so
// the page checks each file here first and sends only the images, in one request.

export const NOT_AN_IMAGE = (name) =>
  `file '${name}' is not a supported image (JPEG, PNG, GIF, BMP, WEBP or TIFF); checked in the browser, not sent`;

const hexBytes = (hex) => Array.from({ length: hex.length / 2 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));

/** The schema's signatures as [format, [[offset, bytes], ...]] pairs. */
export function compileSignatures(signatures) {
  return (signatures || []).map((s) => [s.format, s.parts.map((p) => [p.offset, hexBytes(p.hex)])]);
}

/** "PNG", "JPEG", ... or null when the bytes match none of the compiled signatures. */
export async function sniffImage(file, compiled) {
  if (!compiled.length) return "unchecked"; // a server that lists no signatures decides by itself
  const span = Math.max(0, ...compiled.flatMap(([, parts]) => parts.map(([o, b]) => o + b.length)));
  const bytes = new Uint8Array(await file.slice(0, span).arrayBuffer());
  for (const [format, parts] of compiled) {
    if (parts.every(([offset, magic]) => magic.every((b, i) => bytes[offset + i] === b))) return format;
  }
  return null;
}

// The image formats the API accepts, told from a file's leading bytes — the same table as the server's
// service/inference/images.py. The API rejects a whole batch when one file is not an image (415), so the
// page checks each file here first and sends only the images, in one request.

const MAGIC = [
  [[0xff, 0xd8, 0xff], "JPEG"],
  [[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "PNG"],
  [[0x47, 0x49, 0x46, 0x38, 0x37, 0x61], "GIF"],
  [[0x47, 0x49, 0x46, 0x38, 0x39, 0x61], "GIF"],
  [[0x42, 0x4d], "BMP"],
  [[0x49, 0x49, 0x2a, 0x00], "TIFF"],
  [[0x4d, 0x4d, 0x00, 0x2a], "TIFF"],
];

export const NOT_AN_IMAGE = (name) =>
  `file '${name}' is not a supported image (JPEG, PNG, GIF, BMP, WEBP or TIFF); checked in the browser, not sent`;

/** "PNG", "JPEG", ... or null when the bytes are not an accepted image format. */
export async function sniffImage(file) {
  const bytes = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const ascii = (from, to) => String.fromCharCode(...bytes.slice(from, to));
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "WEBP";
  for (const [magic, name] of MAGIC) if (magic.every((b, i) => bytes[i] === b)) return name;
  return null;
}

"""Decoding uploaded images safely: the type comes from the bytes, not from the client's header."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from service.errors import (
    MSG_CORRUPT_IMAGE,
    MSG_IMAGE_BOMB,
    MSG_IMAGE_TOO_LARGE,
    MSG_NOT_AN_IMAGE,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMedia,
)

DEFAULT_MAX_PIXELS = 40_000_000
# Decoding an upload this small (a 128x128 image) costs less than the hop to a worker thread and back,
# which under load also waits for the GIL on both sides: such uploads are decoded on the event loop.
INLINE_PIXELS = 128 * 128


@dataclass(frozen=True)
class ImageSignature:
    """A format we accept, told from the file's bytes: each (offset, bytes) part must match."""

    format: str
    media_type: str
    parts: tuple[tuple[int, bytes], ...]

    def matches(self, data: bytes) -> bool:
        return all(data[offset : offset + len(magic)] == magic for offset, magic in self.parts)

    def schema(self) -> dict[str, object]:
        """As the vision input schema lists it, so a client (the frontend) checks files the same way."""
        return {
            "format": self.format,
            "media_type": self.media_type,
            "parts": [{"offset": offset, "hex": magic.hex()} for offset, magic in self.parts],
        }


# The one table of accepted formats: the server sniffs with it, and clients read it from the schema.
SIGNATURES = (
    ImageSignature("JPEG", "image/jpeg", ((0, b"\xff\xd8\xff"),)),
    ImageSignature("PNG", "image/png", ((0, b"\x89PNG\r\n\x1a\n"),)),
    ImageSignature("GIF", "image/gif", ((0, b"GIF87a"),)),
    ImageSignature("GIF", "image/gif", ((0, b"GIF89a"),)),
    ImageSignature("BMP", "image/bmp", ((0, b"BM"),)),
    ImageSignature("TIFF", "image/tiff", ((0, b"II*\x00"),)),
    ImageSignature("TIFF", "image/tiff", ((0, b"MM\x00*"),)),
    ImageSignature("WEBP", "image/webp", ((0, b"RIFF"), (8, b"WEBP"))),
)
ACCEPTED_TYPES = sorted({signature.media_type for signature in SIGNATURES})


@dataclass(frozen=True)
class UploadedImage:
    filename: str
    data: bytes


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's leading bytes, or None when it is not one we accept."""
    return next((signature.format for signature in SIGNATURES if signature.matches(data)), None)


def decode_image(upload: UploadedImage, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode to an RGB PIL image: 415 when it is not an image at all, 422 when it is a broken one, 413
    when its header declares more pixels than allowed (a decompression bomb is refused before decoding)."""
    fmt = sniff_format(upload.data)
    if fmt is None:
        raise UnsupportedMedia(MSG_NOT_AN_IMAGE.format(filename=upload.filename))
    try:
        with Image.open(io.BytesIO(upload.data)) as img:
            width, height = img.size  # from the header: nothing is decompressed yet
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    MSG_IMAGE_TOO_LARGE.format(
                        filename=upload.filename, width=width, height=height, limit=max_pixels
                    )
                )
            img.load()
            return img.convert("RGB")
    except Image.DecompressionBombError:
        raise PayloadTooLarge(MSG_IMAGE_BOMB.format(filename=upload.filename, limit=max_pixels)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(
            MSG_CORRUPT_IMAGE.format(filename=upload.filename, format=fmt, reason=exc),
            [{"loc": ["files", upload.filename], "msg": str(exc), "type": "corrupt_image"}],
        ) from None


def decode_small(upload: UploadedImage, *, max_pixels: int) -> Image.Image | None:
    """`decode_image`'s image when the header declares at most `max_pixels` pixels and it decodes; None
    for anything else (bigger, or any problem: `decode_image` decodes or refuses it, with its message)."""
    if sniff_format(upload.data) is None:
        return None
    try:
        with Image.open(io.BytesIO(upload.data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                return None
            img.load()
            return img.convert("RGB")
    except Exception:  # noqa: BLE001 - refused by decode_image, which words the problem
        return None

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

# Leading bytes of every format we accept, and the media type each one is.
_MAGIC: list[tuple[bytes, str, str]] = [
    (b"\xff\xd8\xff", "JPEG", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "PNG", "image/png"),
    (b"GIF87a", "GIF", "image/gif"),
    (b"GIF89a", "GIF", "image/gif"),
    (b"BM", "BMP", "image/bmp"),
    (b"II*\x00", "TIFF", "image/tiff"),
    (b"MM\x00*", "TIFF", "image/tiff"),
]
ACCEPTED_TYPES = sorted({media for _, _, media in _MAGIC} | {"image/webp"})


@dataclass(frozen=True)
class UploadedImage:
    filename: str
    data: bytes


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's leading bytes, or None when it is not one we accept."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name, _ in _MAGIC:
        if data.startswith(magic):
            return name
    return None


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

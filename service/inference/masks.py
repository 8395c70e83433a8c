"""Segmentation masks as images: a predicted mask taken back to the uploaded image's pixels, a mask as a
palette PNG (one 8-bit class index per pixel, a distinct colour per class), and uploaded masks read back
into class indices for evaluation. Shared by the front doors; nothing here knows about HTTP."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import (
    MSG_CORRUPT_IMAGE,
    MSG_IMAGE_BOMB,
    MSG_IMAGE_TOO_LARGE,
    MSG_MASK_NOT_INDEXED,
    MSG_MASK_OUT_OF_RANGE,
    MSG_MASK_SIZE,
    MSG_NOT_AN_IMAGE,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMedia,
)
from service.inference.images import DEFAULT_MAX_PIXELS, UploadedImage, sniff_format

# Modes whose pixels are class indices as they are (a "1" bitmap: 0 and 1).
INDEXED_MODES = ("P", "L", "1", "I", "I;16")
MAX_CLASSES = 256  # one 8-bit index per pixel


def to_image_pixels(
    mask: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """`mask` (H, W), predicted on the model's input, in the pixels of an image of `size` (width, height):
    each image pixel takes the class of the input pixel its centre falls in (nearest neighbour), through
    `box` = (left, top, width, height), the part of the image the learner's resize turned into that input.
    Pixels outside the box (cut off by a centre crop) take the nearest pixel of its edge."""
    rows, cols = mask.shape
    left, top, box_w, box_h = box
    width, height = size
    xs = np.floor((np.arange(width) + 0.5 - left) * cols / box_w).astype(np.int64).clip(0, cols - 1)
    ys = np.floor((np.arange(height) + 0.5 - top) * rows / box_h).astype(np.int64).clip(0, rows - 1)
    return np.ascontiguousarray(mask[ys[:, None], xs[None, :]])


def crops(box: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    """Whether `box` leaves part of an image of `size` out of the model's input (a centre crop)."""
    left, top, box_w, box_h = box
    width, height = size
    return left > 0 or top > 0 or left + box_w < width or top + box_h < height


def palette(count: int) -> list[int]:
    """A distinct colour per class index, the PASCAL VOC way (bits of the index spread over r, g, b):
    0 is black, 1 dark red, 2 dark green, ...; flat [r, g, b, ...] for `count` classes."""
    colours = []
    for index in range(count):
        r = g = b = 0
        code = index
        for shift in range(7, -1, -1):
            r |= (code & 1) << shift
            g |= ((code >> 1) & 1) << shift
            b |= ((code >> 2) & 1) << shift
            code >>= 3
        colours += [r, g, b]
    return colours


def mask_png(mask: np.ndarray, n_classes: int) -> bytes:
    """`mask` (height, width) of class indices as a palette PNG: each pixel's value is its class index."""
    height, width = mask.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    image.putpalette(palette(max(n_classes, 1)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def image_size(upload: UploadedImage) -> tuple[int, int]:
    """(width, height) from the file's header, nothing decompressed; 415/422 as `decode_image` says them."""
    _sniff(upload)
    try:
        with Image.open(io.BytesIO(upload.data)) as image:
            return int(image.size[0]), int(image.size[1])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _corrupt(upload, exc, field="files") from None


def read_mask(
    upload: UploadedImage, *, classes: Sequence[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """An uploaded mask as (height, width) uint8 class indices: a one-channel image (palette, 8-bit grey,
    bitmap, 16-bit grey) whose every value is one of `classes`' indices; 415/413/422 naming the file."""
    _sniff(upload)
    try:
        with Image.open(io.BytesIO(upload.data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    MSG_IMAGE_TOO_LARGE.format(
                        filename=upload.filename, width=width, height=height, limit=max_pixels
                    )
                )
            if image.mode not in INDEXED_MODES:
                raise InvalidInput(
                    MSG_MASK_NOT_INDEXED.format(filename=upload.filename, mode=image.mode),
                    [{"loc": ["masks", upload.filename], "msg": "not one channel", "type": "mask_mode"}],
                )
            image.load()
            values = np.asarray(image).astype(np.int64)
    except Image.DecompressionBombError:
        raise PayloadTooLarge(MSG_IMAGE_BOMB.format(filename=upload.filename, limit=max_pixels)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _corrupt(upload, exc, field="masks") from None
    outside = np.unique(values[(values < 0) | (values >= len(classes))])
    if outside.size:
        shown = outside[:10].tolist()
        raise InvalidInput(
            MSG_MASK_OUT_OF_RANGE.format(
                filename=upload.filename,
                values=shown,
                count=len(classes),
                last=len(classes) - 1,
                classes=list(classes),
            ),
            [{"loc": ["masks", upload.filename], "msg": f"class index {shown}", "type": "mask_class"}],
        )
    return values.astype(np.uint8)


def check_mask_size(mask: np.ndarray, *, mask_name: str, image_name: str, size: tuple[int, int]) -> None:
    """422 naming both files when the mask is not its image's size (width, height)."""
    height, width = mask.shape
    if (width, height) != size:
        raise InvalidInput(
            MSG_MASK_SIZE.format(
                filename=mask_name,
                mask_w=width,
                mask_h=height,
                image=image_name,
                width=size[0],
                height=size[1],
            ),
            [{"loc": ["masks", mask_name], "msg": "not its image's size", "type": "mask_size"}],
        )


def objects(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A 1-D object array holding each (height, width) mask as it is: masks of one batch differ in size."""
    out = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        out[i] = array
    return out


def _sniff(upload: UploadedImage) -> str:
    fmt = sniff_format(upload.data)
    if fmt is None:
        raise UnsupportedMedia(MSG_NOT_AN_IMAGE.format(filename=upload.filename))
    return fmt


def _corrupt(upload: UploadedImage, exc: Exception, *, field: str) -> InvalidInput:
    return InvalidInput(
        MSG_CORRUPT_IMAGE.format(filename=upload.filename, format=sniff_format(upload.data), reason=exc),
        [{"loc": [field, upload.filename], "msg": str(exc), "type": "corrupt_image"}],
    )

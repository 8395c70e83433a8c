"""Generated shapes for the segmentation case: the demo's own generator (`service.training.shapes`, the same
seed gives the same bytes), as (image, mask) pairs, PNG uploads and folders. The bench trains its own
segmentation model on them when the demo one is missing, and sends them as uploads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from service.training.shapes import CODES, IMAGES, MASKS, draw

SIZE = 48  # pixels, square: the demo model's size (the stand-in is trained at it; uploads are sent at it)

__all__ = ["CODES", "IMAGES", "MASKS", "SIZE", "png", "shape_pairs", "write_shapes"]


def shape_pairs(n: int, *, seed: int = 0, size: int = SIZE) -> list[tuple[Image.Image, Image.Image]]:
    """`n` (image, mask) pairs, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [draw(rng, size) for _ in range(n)]


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_shapes(folder: Path, n: int, *, seed: int = 0, size: int = SIZE) -> list[Path]:
    """`folder/images/<i>.png` and `folder/masks/<i>.png` (the same name); the image paths."""
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    (folder / MASKS).mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, mask) in enumerate(shape_pairs(n, seed=seed, size=size)):
        path = folder / IMAGES / f"{i:05d}.png"
        image.save(path)
        mask.save(folder / MASKS / path.name)
        paths.append(path)
    return paths

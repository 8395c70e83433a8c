"""Generated shapes for the segmentation case: the same seed gives the same bytes (nothing shipped).

Images with one to three coloured circles, squares and triangles on a noisy background, and their masks
(one byte per pixel: the class index into `CODES`), like the demo's `shapes-segmentation` data. The bench
trains its own segmentation model on them when the demo one is missing, and sends them as uploads.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CODES = ["background", "circle", "square", "triangle"]
SIZE = 64  # pixels, square: the demo model's size
IMAGES, MASKS = "images", "masks"
NOISE = 20.0


def draw(rng: np.random.Generator, size: int = SIZE) -> tuple[Image.Image, Image.Image]:
    """One RGB image and its "L" mask (a later shape covers an earlier one, in the mask too)."""
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.normal(0.0, NOISE, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    mask = Image.new("L", (size, size), 0)
    pen, marker = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        code = int(rng.integers(1, len(CODES)))
        radius = float(rng.uniform(size * 0.1, size * 0.22))
        cx, cy = (float(v) for v in rng.uniform(radius, size - radius, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        if CODES[code] == "circle":
            pen.ellipse(box, fill=colour)
            marker.ellipse(box, fill=code)
        elif CODES[code] == "square":
            pen.rectangle(box, fill=colour)
            marker.rectangle(box, fill=code)
        else:
            corners = [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)]
            pen.polygon(corners, fill=colour)
            marker.polygon(corners, fill=code)
    return image, mask


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

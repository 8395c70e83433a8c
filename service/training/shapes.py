"""The shapes data set of the segmentation demo, generated from a seed: images with one to three coloured
circles, squares and triangles on a noisy background (never overlapping, each in a colour that stands out
from the background), and their masks (one byte per pixel: the class index into `CODES`). The same seed
gives the same bytes, so the data need not be shipped; it is written once under
`.cache/data/shapes-v<GENERATOR_VERSION>-<seed>-<n>-<size>/{images,masks}/<index>.png` (or any folder
given)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CODES = ["background", "circle", "square", "triangle"]
IMAGES, MASKS = "images", "masks"
MAX_SHAPES = 3
NOISE = 20.0  # standard deviation of the background's per-pixel noise, in 0..255 units
MIN_CONTRAST = 100.0  # least RGB distance between a shape's colour and the background's
PLACE_TRIES = 20
# Part of the cache folder's name: data written by an earlier generator is never reused.
GENERATOR_VERSION = 2


def _contrasting(rng: np.random.Generator, base: np.ndarray) -> tuple[int, ...]:
    """A random colour at least `MIN_CONTRAST` away from the background's (a shape drawn in nearly the
    background's colour is invisible under the noise, and its mask would ask the impossible)."""
    while True:
        colour = rng.integers(0, 256, 3)
        if float(np.linalg.norm(colour - base)) >= MIN_CONTRAST:
            return tuple(int(c) for c in colour)


def _place(rng: np.random.Generator, size: int, taken: list[tuple[float, float, float]]) -> tuple[float, ...]:
    """A centre and radius whose box clears every shape already drawn (shapes never overlap, so each mask
    region is a whole shape); an empty tuple after `PLACE_TRIES` misses."""
    for _ in range(PLACE_TRIES):
        radius = float(rng.uniform(size * 0.15, size * 0.3))
        cx, cy = (float(v) for v in rng.uniform(radius, size - radius, 2))
        if all(max(abs(cx - x), abs(cy - y)) > radius + r + 1 for x, y, r in taken):
            return cx, cy, radius
    return ()


def draw(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    """One image and its mask: a random background colour with noise, then 1 to 3 shapes of random size,
    place and a colour that stands out from the background, none overlapping another."""
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.normal(0.0, NOISE, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    mask = Image.new("L", (size, size), 0)
    pen, marker = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    taken: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(1, MAX_SHAPES + 1))):
        code = int(rng.integers(1, len(CODES)))
        placed = _place(rng, size, taken)
        if not placed:
            continue
        cx, cy, radius = placed
        taken.append((cx, cy, radius))
        colour = _contrasting(rng, base)
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        name = CODES[code]
        if name == "circle":
            pen.ellipse(box, fill=colour)
            marker.ellipse(box, fill=code)
        elif name == "square":
            pen.rectangle(box, fill=colour)
            marker.rectangle(box, fill=code)
        else:
            turn = float(rng.uniform(0.0, 2 * math.pi))
            angles = [turn + k * 2 * math.pi / 3 for k in range(3)]
            corners = [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]
            pen.polygon(corners, fill=colour)
            marker.polygon(corners, fill=code)
    return image, mask


def write_shapes(folder: Path, *, n: int, size: int, seed: int) -> Path:
    """`folder/images/<i>.png` and `folder/masks/<i>.png` for i < n; kept when already complete."""
    images, masks = folder / IMAGES, folder / MASKS
    if images.is_dir() and masks.is_dir() and len(list(masks.glob("*.png"))) == n:
        return folder
    rng = np.random.default_rng(seed)
    tmp = folder.with_name(folder.name + ".tmp")
    for sub in (tmp / IMAGES, tmp / MASKS):
        sub.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, mask = draw(rng, size)
        image.save(tmp / IMAGES / f"{i:05d}.png")
        mask.save(tmp / MASKS / f"{i:05d}.png")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder


def mask_of(image: Path) -> Path:
    """The mask of `images/<name>`: `masks/<name>` (fastai's get_y; stored by reference in the export)."""
    return image.parent.parent / MASKS / image.name

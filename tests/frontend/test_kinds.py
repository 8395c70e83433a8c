"""The pages of the other kinds in a real browser, against the real server and tiny real learners: the
segmentation mask drawn over each thumbnail (legend, opacity), the text box and its CSV mode, the recommender
(top items with titles, more like this, one pair's rating) and a model still training in the list."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from service.inference.masks import mask_png
from tests.frontend.conftest import PageLog
from tests.frontend.test_browser import assert_clean, shot
from tests.frontend.test_tasks import detail_of, predicted
from tests.tiny_segmentation import SEGMENTATION, shapes

PERCENT = re.compile(r"^\d+\.\d%$")

# The pixels a canvas holds (not what the screen shows: the canvas is drawn at its own size).
CANVAS_PIXELS = """c => ({
    width: c.width,
    height: c.height,
    rgba: [...c.getContext("2d").getImageData(0, 0, c.width, c.height).data],
})"""

# The thumbnail and the mask over it: where each sits on screen, how it is fitted and its own size.
OVERLAY_BOXES = """t => [t.querySelector("img.thumb"), t.querySelector("canvas.mask-overlay")].map((e) => {
    const r = e.getBoundingClientRect();
    return {
        box: [r.x, r.y, r.width, r.height],
        fit: getComputedStyle(e).objectFit,
        size: e.tagName === "IMG" ? [e.naturalWidth, e.naturalHeight] : [e.width, e.height],
    };
})"""


def shape_file(index: int, size: tuple[int, int]) -> dict[str, Any]:
    """A generated shapes image (tests/tiny_segmentation.py) of `size` (width, height) as an upload."""
    pixels, _ = shapes(index, size)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return {"name": f"shapes-{index}.png", "mimeType": "image/png", "buffer": buffer.getvalue()}


def rgb(css: str) -> tuple[int, ...]:
    """`rgb(1, 2, 3)` → (1, 2, 3)."""
    return tuple(int(part) for part in css.removeprefix("rgb(").removesuffix(")").split(","))


def test_segmentation_mask_is_coloured_by_class_over_each_thumbnail_with_a_legend(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, SEGMENTATION)["classes"]
    page.goto(f"/#/models/{SEGMENTATION}")
    expect(page.locator("#vision-title")).to_have_text("Segment images")
    # A square image and one that is not: the mask has each upload's own size, fitted as its thumbnail is.
    files = [shape_file(100, (32, 32)), shape_file(101, (40, 28))]
    items = predicted(page, lambda: page.locator("#image-files").set_input_files(files))
    tiles = page.locator("#tiles .tile")
    expect(tiles.locator("canvas.mask-overlay")).to_have_count(2)
    for i, item in enumerate(items):
        tile = tiles.nth(i)
        assert item["classes"] == classes
        height, width = item["size"]
        # The API's mask: one class index per pixel (a palette PNG, read as indices).
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["mask_png"]))))
        assert mask.shape == (height, width)

        legend = tile.locator(".legend-entry")
        expect(legend.locator(".legend-class")).to_have_text(classes)
        shown = legend.evaluate_all("els => els.map(e => Number(e.dataset.fraction))")
        assert shown == [item["class_fractions"][c] for c in classes]
        expect(legend.locator(".legend-fraction")).to_have_text([PERCENT] * len(classes))
        swatches = legend.locator(".swatch").evaluate_all(
            "els => els.map(e => getComputedStyle(e).backgroundColor)"
        )
        colours = [rgb(c) for c in swatches]
        assert len(set(colours)) == len(classes)  # a colour of its own per class

        # Every pixel of the canvas is its class's legend colour, opaque (the slider makes it see-through).
        drawn = tile.locator("canvas.mask-overlay").evaluate(CANVAS_PIXELS)
        assert [drawn["width"], drawn["height"]] == [width, height]
        pixels = np.array(drawn["rgba"], dtype=np.uint8).reshape(height, width, 4)
        np.testing.assert_array_equal(pixels[..., :3], np.array(colours, dtype=np.uint8)[mask])
        assert (pixels[..., 3] == 255).all()

        # Over the thumbnail: the same box, both fitted with `contain`, of the same size: pixel on pixel.
        thumb, overlay = tile.evaluate(OVERLAY_BOXES)
        assert overlay["box"] == thumb["box"]
        assert thumb["fit"] == overlay["fit"] == "contain"
        assert overlay["size"] == thumb["size"] == [width, height]
    shot(page, tmp_path, "segmentation")
    assert_clean(page_log, live_server)


def test_segmentation_opacity_slider_changes_only_its_own_images_mask(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"/#/models/{SEGMENTATION}")
    files = [shape_file(102, (32, 32)), shape_file(103, (28, 40))]
    predicted(page, lambda: page.locator("#image-files").set_input_files(files))
    tiles = page.locator("#tiles .tile")
    first, second = (tiles.nth(i).locator("canvas.mask-overlay") for i in range(2))
    expect(first).to_have_css("opacity", "0.5")
    slider = tiles.nth(0).get_by_label("Mask opacity")
    expect(slider).to_have_value("50")
    slider.fill("20")
    expect(first).to_have_css("opacity", "0.2")
    expect(second).to_have_css("opacity", "0.5")
    slider.fill("100")
    expect(first).to_have_css("opacity", "1")
    slider.fill("0")
    expect(first).to_have_css("opacity", "0")
    shot(page, tmp_path, "segmentation-opacity")
    assert_clean(page_log, live_server)


# The page's own decoder (js/tasks.js), run on a mask PNG: its size and class index per pixel.
DECODE = """async (b64) => {
    const { maskIndices } = await import("/js/tasks.js");
    const mask = await maskIndices(b64);
    return { width: mask.width, height: mask.height, indices: [...mask.indices] };
}"""


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def written_png(indices: np.ndarray, *, depth: int, palette: bool, filters: Sequence[int]) -> bytes:
    """`indices` as a PNG written by hand: `depth` bits per pixel (rows padded to a byte), palette or grey,
    each row filtered with the next of `filters` (PNG's five), the data split over two IDAT chunks."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = indices.shape
    raw = bytearray()
    previous = bytes((width * depth + 7) // 8)
    for y in range(height):
        bits = "".join(format(int(v), f"0{depth}b") for v in indices[y])
        bits += "0" * (-len(bits) % 8)
        row = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
        kind = filters[y % len(filters)]
        raw.append(kind)
        for x, value in enumerate(row):
            a, b, c = (row[x - 1] if x else 0), previous[x], (previous[x - 1] if x else 0)
            raw.append((value - [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]) & 255)
        previous = row
    data = zlib.compress(bytes(raw))
    header = struct.pack(">IIBBBBB", width, height, depth, 3 if palette else 0, 0, 0, 0)
    colours = bytes((37 * i + k * 91) % 256 for i in range(2**depth) for k in range(3))
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"PLTE", colours) if palette else b"",
            chunk(b"IDAT", data[: len(data) // 2]),
            chunk(b"IDAT", data[len(data) // 2 :]),
            chunk(b"IEND", b""),
        ]
    )


def test_the_page_reads_each_pixels_class_index_from_the_mask_png_however_it_is_encoded(
    page: Any, live_server: str, page_log: PageLog
) -> None:
    """The decoder behind the overlay: the server's own encoding for 2 to 20 classes (palettes of 1 to 8
    bits), and hand-written PNGs with every row filter, odd widths and grey samples."""
    rng = np.random.default_rng(0)
    page.goto("/")
    cases: list[tuple[str, np.ndarray, bytes]] = []
    for n_classes in (2, 3, 11, 20):
        mask = rng.integers(0, n_classes, size=(9, 13), dtype=np.uint8)
        cases.append((f"server, {n_classes} classes", mask, mask_png(mask, n_classes)))
    for depth in (1, 2, 4, 8):
        mask = rng.integers(0, 2**depth, size=(7, 11), dtype=np.uint8)
        for palette in (True, False):
            png = written_png(mask, depth=depth, palette=palette, filters=[0, 1, 2, 3, 4])
            cases.append((f"{depth}-bit {'palette' if palette else 'grey'}", mask, png))
    for name, mask, png in cases:
        decoded = page.evaluate(DECODE, base64.b64encode(png).decode())
        assert [decoded["height"], decoded["width"]] == list(mask.shape), name
        np.testing.assert_array_equal(np.array(decoded["indices"]).reshape(mask.shape), mask, err_msg=name)
    assert_clean(page_log, live_server)

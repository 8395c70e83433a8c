"""A segmentation learner is served the learner's way: its per-pixel probabilities equal fastai's own
`get_preds(dl=test_dl(...))` and its masks fastai's decoded argmax on the resized tensor, on torch and on ONNX
Runtime; each mask then comes back in the uploaded image's pixels, where fastai's own resize takes it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service.errors import LoadError
from service.inference.images import UploadedImage
from service.inference.kinds import predictor_for, recognise
from service.inference.masks import mask_png, palette, to_image_pixels
from service.inference.runtime import RuntimeOptions, RuntimeSetting, select_runtime
from service.inference.tasks import SegmentationHead, Task
from service.loading import load_exported_learner
from tests.tiny_segmentation import CODES, IMAGE_SIZE, SEGMENTATION, shapes

TOLERANCE = 1e-4
# Upload sizes (width, height): square, wider, taller, smaller than the model's input.
SIZES = [(32, 32), (64, 40), (40, 64), (48, 48), (20, 26), (33, 17)]


def _learner(store: Path, *, method: str = "crop") -> Any:
    """The tiny learner as the server loads it, its Resize switched to `method` (a real fastai Resize
    either way: fastai's own test_dl then runs the same one)."""
    learn = load_exported_learner(store / SEGMENTATION / "model.pkl").learn
    from fastai.vision.augment import Resize

    for tfm in learn.dls.after_item.fs:
        if isinstance(tfm, Resize):
            tfm.method = method
    return learn


def _uploads(sizes: list[tuple[int, int]] = SIZES) -> list[UploadedImage]:
    """Generated shapes of `sizes`, which the tiny learner tells apart (then its argmax is no one class)."""
    uploads = []
    for i, size in enumerate(sizes):
        buffer = io.BytesIO()
        Image.fromarray(shapes(50 + i, size)[0]).save(buffer, format="PNG")
        uploads.append(UploadedImage(f"{i}.png", buffer.getvalue()))
    return uploads


def _runtimes(predictor: Any, tmp_path: Path) -> Iterator[str]:
    """Torch first, then ONNX Runtime (with `onnx` the model fails rather than fall back to torch)."""
    yield predictor.runtime.name
    options = RuntimeOptions(RuntimeSetting.ONNX, tmp_path / "onnx")
    yield select_runtime(predictor, options, sha256=None).name


def _fastai(learn: Any, items: Any) -> tuple[np.ndarray, np.ndarray]:
    dl = learn.dls.test_dl(items, num_workers=0)
    with learn.no_bar():
        outputs, _, decoded = learn.get_preds(dl=dl, with_decoded=True)
    return np.asarray(outputs.numpy()), np.asarray(decoded.numpy())


def _clear(outputs: np.ndarray) -> np.ndarray:
    """Pixels whose two best classes are not within float noise of a tie (only there must labels agree)."""
    top = np.sort(outputs, axis=1)
    return np.asarray(top[:, -1] - top[:, -2] > 2 * TOLERANCE)


@pytest.mark.parametrize("method", ["crop", "squish"])
def test_segmentation_equals_fastai_on_both_runtimes(method: str, seg_store: Path, tmp_path: Path) -> None:
    learn = _learner(seg_store, method=method)
    assert recognise(learn).task is Task.SEGMENTATION
    predictor = predictor_for(learn)
    assert predictor.fast_path  # AddMaskCodes + Resize + ToTensor: the fast path, so ONNX can serve it
    uploads = _uploads()
    reference, decoded = _fastai(learn, predictor.prepare(uploads).images)
    assert reference.shape == (len(uploads), len(CODES), IMAGE_SIZE, IMAGE_SIZE)
    assert set(np.unique(decoded)) == {0, 1, 2}  # every class predicted somewhere: the argmax is no formality
    for runtime in _runtimes(predictor, tmp_path):
        assert predictor.runtime.name == runtime
        prepared = predictor.prepare(uploads)
        outputs = predictor.forward_many([prepared])[0]
        np.testing.assert_allclose(outputs, reference, atol=TOLERANCE, rtol=TOLERANCE)
        assert isinstance(predictor.head, SegmentationHead)
        masks = predictor.head.masks(outputs)
        clear = _clear(reference)
        assert np.array_equal(masks[clear], decoded[clear])
        for upload, (width, height), prediction in zip(
            uploads, SIZES, predictor.finish(prepared, outputs), strict=True
        ):
            assert prediction.size == [height, width] and prediction.mask.shape == (height, width)
            assert prediction.classes == CODES
            assert sum(prediction.class_fractions.values()) == pytest.approx(1.0)
            cropped = method == "crop" and width != height
            assert bool(prediction.warnings) == cropped, (upload.filename, prediction.warnings)


@pytest.mark.parametrize("method", ["crop", "squish"])
def test_masks_map_back_to_the_uploaded_images_pixels_as_fastais_resize_does(
    method: str, seg_store: Path
) -> None:
    """A mask in the model's input, taken to the uploaded image's pixels, then through fastai's own item
    transforms (the learner's Resize on a `PILMask`) is the same mask again: the served mask sits where
    fastai puts the image's pixels."""
    from fastai.vision.all import PILImage, PILMask
    from fasttransform.transform import Pipeline

    learn = _learner(seg_store, method=method)
    predictor = predictor_for(learn)
    after_item = Pipeline(list(learn.dls.valid.after_item.fs), split_idx=1)
    rng = np.random.default_rng(0)
    for upload, size in zip(_uploads(), SIZES, strict=True):
        if size[0] < IMAGE_SIZE or size[1] < IMAGE_SIZE:
            continue  # upsampled: several model pixels share an image pixel, no one-to-one way back
        image = PILImage.create(upload.data)
        truth = PILMask.create(Image.fromarray(rng.integers(0, 3, (size[1], size[0]), dtype=np.uint8)))
        _, small = after_item((image, truth))
        small = np.asarray(small, dtype=np.uint8)
        [box] = predictor.boxes(predictor.prepare([upload]))
        mapped = to_image_pixels(small, box, size)
        assert mapped.shape == (size[1], size[0])
        _, again = after_item((image, PILMask.create(Image.fromarray(mapped))))
        assert np.array_equal(np.asarray(again, dtype=np.uint8), small), (method, size)


def test_codes_come_from_the_mask_block_else_the_vocab_else_indices(seg_store: Path) -> None:
    from fastai.vision.core import AddMaskCodes

    learn = _learner(seg_store)
    assert predictor_for(learn).head.classes == CODES
    [add_codes] = [t for t in learn.dls.after_item.fs if isinstance(t, AddMaskCodes)]
    add_codes.codes = None
    assert predictor_for(learn).head.classes == ["0", "1", "2"]
    learn.dls.vocab = ["sky", "road", "car"]
    assert predictor_for(learn).head.classes == ["sky", "road", "car"]
    add_codes.codes = ["background", "object"]  # two names for the model's three outputs
    with pytest.raises(LoadError, match="name 2 class"):
        predictor_for(learn)


def test_a_mask_png_has_a_palette_and_class_indices_as_pixels() -> None:
    mask = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    image = Image.open(io.BytesIO(mask_png(mask, 3)))
    assert image.mode == "P" and image.size == (3, 2)
    assert np.array_equal(np.asarray(image), mask)
    colours = palette(256)
    assert len({tuple(colours[i : i + 3]) for i in range(0, len(colours), 3)}) == 256
    assert image.getpalette()[:9] == colours[:9]

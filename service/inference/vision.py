"""Vision learners: decode uploads and predict them as one batch through the learner's transforms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.errors import (
    MSG_IMAGE_TOO_LARGE,
    MSG_POINTS_RESIZE,
    MSG_SEGMENTATION_RESIZE,
    LoadError,
    PayloadTooLarge,
)
from service.inference.images import (
    ACCEPTED_TYPES,
    DEFAULT_MAX_PIXELS,
    INLINE_PIXELS,
    SIGNATURES,
    UploadedImage,
    decode_image,
    decode_small,
)
from service.inference.masks import objects
from service.inference.predictor import ModelKind, split_rows
from service.inference.runtime import FastaiPipeline, ModelRuntime, TorchModel
from service.inference.tasks import (
    BOXED_TASKS,
    AnyHead,
    AnyPrediction,
    Decoding,
    HeadFacts,
    PointsHead,
    SegmentationPrediction,
    Task,
)

# Item transforms whose validation-time output is a fixed-size tensor, so a batch can be stacked directly,
# and batch transforms that are deterministic at validation time (augmentations are train-only there).
FAST_ITEM_TFMS = {
    "Resize",
    "ToTensor",
    "FlipItem",
    "RandomResizedCrop",
    "DihedralItem",
    "PointScaler",
    "AddMaskCodes",
}
# Train-only item transforms, and those that leave an image as it is (PointScaler scales the target's
# points; on an image alone it only notes its size; AddMaskCodes only decodes a target mask).
TRAIN_ONLY_ITEM_TFMS = {"FlipItem", "DihedralItem", "PointScaler", "AddMaskCodes"}
FAST_BATCH_TFMS = {
    "IntToFloatTensor",
    "Normalize",
    "Flip",
    "Dihedral",
    "Rotate",
    "Zoom",
    "Warp",
    "Brightness",
    "Contrast",
    "Saturation",
    "Hue",
    "RandomErasing",
}


def image_size_of(learn: Any) -> list[int] | None:
    """The [h, w] the learner resizes to, read from its item transforms (fastai stores sizes as (w, h))."""
    for tfm in learn.dls.after_item.fs:
        size = getattr(tfm, "size", None)
        if size is not None:
            return [int(size[1]), int(size[0])]
    return None


class NativeResize:
    """fastai's validation-time `Resize` (centre crop or squish, then resize) as two PIL calls.

    It makes the same crop box and the same `resize` call as fastai, so the pixels are identical; an image
    whose box would need padding is left to fastai's own transform.
    """

    def __init__(self, resize: Any) -> None:
        self.width, self.height = int(resize.size[0]), int(resize.size[1])
        self.squish = str(resize.method) == "squish"
        self.resample = resize.mode

    @classmethod
    def for_pipeline(cls, fs: list[Any]) -> NativeResize | None:
        names = [type(t).__name__ for t in fs]
        if sorted(set(names) - TRAIN_ONLY_ITEM_TFMS) != ["Resize", "ToTensor"]:
            return None
        resize = fs[names.index("Resize")]
        if str(resize.method) not in {"crop", "squish"}:
            return None
        return cls(resize)

    def __call__(self, image: Any) -> np.ndarray | None:
        """HWC uint8 pixels, or None when fastai's transform must do it."""
        w, h = _pil_size(image)
        if self.squish:
            box = (0, 0, w, h)
        else:
            m = w / self.width if w / self.width < h / self.height else h / self.height
            cw, ch = int(m * self.width), int(m * self.height)
            left, top = int(0.5 * (w - cw)), int(0.5 * (h - ch))
            box = (left, top, left + cw, top + ch)
        if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            return None
        if box == (0, 0, w, h) and (w, h) == (self.width, self.height):
            return np.asarray(image, dtype=np.uint8)  # PIL's resize to its own size is a copy: same pixels
        return np.asarray(image.crop(box).resize((self.width, self.height), self.resample), dtype=np.uint8)


@dataclass(frozen=True)
class ResizeBox:
    """Which part of an image fastai's validation-time `Resize` turns into the model's input: the same
    arithmetic as `Resize.encodes` (centre crop or pad at `pcts` 0.5, or squish), so points the model
    gives in [-1, 1] of its input map back to the uploaded image's pixels."""

    width: int
    height: int
    method: str

    @classmethod
    def for_pipeline(cls, fs: list[Any]) -> ResizeBox | None:
        from fastai.vision.augment import Resize

        resizes = [t for t in fs if type(t) is Resize]
        if len(resizes) != 1:
            return None
        resize = resizes[0]
        return cls(int(resize.size[0]), int(resize.size[1]), str(resize.method))

    def box(self, image: Any) -> tuple[float, float, float, float]:
        w, h = _pil_size(image)
        if self.method == "squish":
            return (0.0, 0.0, float(w), float(h))
        ratio_w, ratio_h = w / self.width, h / self.height
        crop = self.method == "crop"
        m = ratio_w if (ratio_w < ratio_h if crop else ratio_w > ratio_h) else ratio_h
        cw, ch = int(m * self.width), int(m * self.height)
        return (float(int(0.5 * (w - cw))), float(int(0.5 * (h - ch))), float(cw), float(ch))


def _pil_size(image: Any) -> tuple[int, int]:
    """PIL's own (width, height): fastai patches `Image.size` into a property that builds a tuple subclass on
    every call, a sizeable share of a small image's transform time."""
    size = getattr(image, "_size", None)  # what PIL's own `size` returns
    return (int(size[0]), int(size[1])) if size is not None else (int(image.size[0]), int(image.size[1]))


@dataclass(frozen=True)
class PreparedImages:
    """One request's decoded images (fastai `PILImage`s), in upload order."""

    images: list[Any]
    # The uploaded files (references, no copy), for the payload log's sha256; None for decoded pixels.
    sources: list[bytes] | None = None

    @property
    def n(self) -> int:
        return len(self.images)


class VisionPredictor(HeadFacts):
    """Decodes uploads and predicts them as one batch through the learner's transforms (a `Predictor`)."""

    kind: ClassVar[ModelKind] = ModelKind.VISION

    def __init__(
        self, learn: Any, *, head: Callable[[int], AnyHead], max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        """`head` makes the task's head from the model's output width (an image regression's targets and a
        points model's points are counted from it)."""
        self.max_pixels = max_pixels
        self.image_size = image_size_of(learn)
        self._pipeline = FastaiPipeline(learn)
        self._torch = TorchModel(learn, input_names=("x",))
        # The forward under the fast path: torch, until `runtime.select_runtime` puts ONNX Runtime here.
        self.runtime: ModelRuntime = self._torch
        from fasttransform.transform import Pipeline

        # The validation pipelines with split_idx fixed to 1, as test_dl runs them: train-only augmentations
        # are skipped and Resize crops from the centre (the DataLoader only sets split_idx while iterating).
        valid = learn.dls.valid
        self._after_item = Pipeline(list(valid.after_item.fs), split_idx=1)
        self._after_batch = Pipeline(list(valid.after_batch.fs), split_idx=1)
        item_names = {type(t).__name__ for t in self._after_item.fs}
        batch_names = {type(t).__name__ for t in self._after_batch.fs}
        self.fast_path = (
            self.image_size is not None and item_names <= FAST_ITEM_TFMS and batch_names <= FAST_BATCH_TFMS
        )
        self._native_resize = NativeResize.for_pipeline(list(valid.after_item.fs)) if self.fast_path else None
        grey = self._grey()
        self.head: AnyHead = head(int(self._forward(grey.images).shape[1]))
        self._resize_box = ResizeBox.for_pipeline(list(valid.after_item.fs))
        if self.head.task is Task.POINTS and self._resize_box is None:
            found = [type(t).__name__ for t in valid.after_item.fs]
            raise LoadError(MSG_POINTS_RESIZE.format(found=found))
        if self.head.task is Task.SEGMENTATION and self._resize_box is None:
            found = [type(t).__name__ for t in valid.after_item.fs]
            raise LoadError(MSG_SEGMENTATION_RESIZE.format(found=found))

    def input_schema(self) -> dict[str, Any]:
        return {
            "task": self.head.task.value,
            "image_size": self.image_size,
            "channels": 3,
            "accepted_types": ACCEPTED_TYPES,
            "signatures": [signature.schema() for signature in SIGNATURES],
        }

    def prepare(self, uploads: list[UploadedImage]) -> PreparedImages:
        """Decode every upload first, so a bad file fails the request before any compute."""
        from fastai.vision.core import PILImage

        images = [PILImage(decode_image(u, max_pixels=self.max_pixels)) for u in uploads]
        return PreparedImages(images, [u.data for u in uploads])

    def prepare_inline(
        self, uploads: list[UploadedImage], *, max_pixels: int = INLINE_PIXELS
    ) -> PreparedImages | None:
        """`prepare`'s images when the uploads together declare at most `max_pixels` pixels and all decode
        (cheap enough for the event loop), else None: `prepare` then decodes or refuses them."""
        from fastai.vision.core import PILImage

        images = []
        budget = min(max_pixels, self.max_pixels)
        for upload in uploads:
            image = decode_small(upload, max_pixels=budget)
            if image is None:
                return None
            width, height = _pil_size(image)
            budget -= width * height
            images.append(PILImage(image))
        return PreparedImages(images, [u.data for u in uploads])

    def prepare_pixels(self, pixels: np.ndarray) -> PreparedImages:
        """Decoded RGB pixels, uint8 (n, height, width, 3), as the same images `prepare` makes of files;
        the learner's own transforms then resize them exactly as they would a decoded upload."""
        from fastai.vision.core import PILImage
        from PIL import Image

        _, height, width, _ = pixels.shape
        if height * width > self.max_pixels:
            raise PayloadTooLarge(
                MSG_IMAGE_TOO_LARGE.format(
                    filename="pixels", width=width, height=height, limit=self.max_pixels
                )
            )
        return PreparedImages([PILImage(Image.fromarray(np.ascontiguousarray(image))) for image in pixels])

    @property
    def torch_model(self) -> TorchModel:
        """The learner's model in torch, whatever runtime serves: what explanations differentiate."""
        return self._torch

    def encoded(self, prepared: PreparedImages) -> Any:
        """The model's input batch for these images: the learner's own transforms (fastai's `test_dl` for
        transforms the fast path does not reproduce)."""
        if not self.fast_path:
            return self._pipeline.inputs(prepared.images)[0]
        return self._encode(prepared.images)

    def heat_boxes(self, prepared: PreparedImages) -> list[tuple[float, float, float, float]]:
        """Per image, the part of it (its pixels) the model saw: the learner's resize box, or the whole
        image when its transforms have no single `Resize` (they squish it, as far as we can tell)."""
        if self._resize_box is not None:
            return self.boxes(prepared)
        return [(0.0, 0.0, float(w), float(h)) for w, h in map(_pil_size, prepared.images)]

    def grey(self) -> PreparedImages:
        """One mid-grey image of the learner's own input size."""
        return self._grey()

    def self_check(self) -> None:
        """Predict one mid-grey image of the learner's own input size."""
        grey = self._grey()
        outputs = self.forward_many([grey])[0]
        self.head.check(outputs)
        self.finish(grey, outputs)

    def _grey(self) -> PreparedImages:
        """One mid-grey image of the learner's own input size."""
        from fastai.vision.core import PILImage
        from PIL import Image

        height, width = self.image_size or [64, 64]
        return PreparedImages([PILImage(Image.new("RGB", (width, height), (128, 128, 128)))])

    def parity_inputs(self) -> list[tuple[Any, ...]]:
        """The self-check image encoded, then 8 random images in the model's input space."""
        import torch

        if not self.fast_path:
            return []
        check = self._encode(self._grey().images)
        noise = torch.randn((8, *check.shape[1:]), generator=torch.Generator().manual_seed(0))
        return [(check,), (noise,)]

    def predict(self, uploads: list[UploadedImage]) -> list[AnyPrediction]:
        """prepare → forward → finish in the calling thread (in-process use; the server batches)."""
        prepared = self.prepare(uploads)
        return self.finish(prepared, self.forward_many([prepared])[0])

    def forward_many(self, batch: list[PreparedImages]) -> list[np.ndarray]:
        """One forward pass for several requests' images; each gets its own slice back."""
        if len(batch) == 1:
            return [self._forward(batch[0].images)]
        return split_rows(
            self._forward([image for prepared in batch for image in prepared.images]),
            [prepared.n for prepared in batch],
        )

    def finish(
        self, prepared: PreparedImages, outputs: np.ndarray, *, threshold: float | None = None
    ) -> list[AnyPrediction]:
        if self.head.task not in BOXED_TASKS:
            return list(self.head.decode(outputs, how=Decoding(threshold=threshold)))
        sizes = [_pil_size(image) for image in prepared.images]
        how = Decoding(threshold=threshold, boxes=self.boxes(prepared), sizes=sizes)
        return list(self.head.decode(outputs, how=how))

    def scored_outputs(self, prepared: PreparedImages, outputs: np.ndarray) -> np.ndarray:
        """What evaluation scores: the outputs, or for points their pixels in each uploaded image, or for
        segmentation each image's mask in its own pixels (an object array: the sizes differ)."""
        if self.head.task is Task.POINTS:
            assert isinstance(self.head, PointsHead)
            return self.head.pixels(outputs, self.boxes(prepared))
        if self.head.task is Task.SEGMENTATION:
            masks = [p.mask for p in self.finish(prepared, outputs) if isinstance(p, SegmentationPrediction)]
            return objects(masks)
        return outputs

    def boxes(self, prepared: PreparedImages) -> list[tuple[float, float, float, float]]:
        """Per image, the part of it (its pixels) that became the model's input (see `ResizeBox`)."""
        assert self._resize_box is not None
        return [self._resize_box.box(image) for image in prepared.images]

    def _forward(self, images: list[Any]) -> np.ndarray:
        if not self.fast_path:  # transforms we do not know: fastai's own DataLoader
            return self._pipeline.outputs(images)
        return self.runtime.outputs(self._encode(images))

    def _encode(self, images: list[Any]) -> Any:
        """fastai's own item and batch transforms, without building a DataLoader per request."""
        import torch
        from fastai.torch_core import TensorImage

        pixels = [self._native_resize(image) for image in images] if self._native_resize is not None else []
        ready = [p for p in pixels if p is not None]
        if pixels and len(ready) == len(images):  # one stack and one layout change for the whole batch
            stacked = torch.from_numpy(np.stack(ready)).permute(0, 3, 1, 2).contiguous()
        else:
            stacked = torch.stack(
                [
                    torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1)
                    if p is not None
                    else self._after_item((image,))[0]
                    for p, image in zip(pixels or [None] * len(images), images, strict=True)
                ]
            )
        batch = TensorImage(stacked).to(self._torch.device)
        (batch,) = self._after_batch((batch,))
        return batch

"""Vision learners: decode uploads and predict them as one batch through the learner's transforms."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.inference.base import LearnerRunner, ModelRunner, Prediction, predictions_from_probs, split_rows
from service.inference.images import ACCEPTED_TYPES, UploadedImage, decode_image

# Item transforms whose validation-time output is a fixed-size tensor, so a batch can be stacked directly,
# and batch transforms that are deterministic at validation time (augmentations are train-only there).
FAST_ITEM_TFMS = {"Resize", "ToTensor", "FlipItem", "RandomResizedCrop", "DihedralItem"}
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
    """The (h, w) the learner resizes to, read from its item transforms."""
    for tfm in learn.dls.after_item.fs:
        size = getattr(tfm, "size", None)
        if size is not None:
            return [int(s) for s in size]
    return None


class VisionPredictor:
    kind = "vision"

    def __init__(self, learn: Any) -> None:
        self.classes = [str(c) for c in learn.dls.vocab]
        self.image_size = image_size_of(learn)
        self._runner = LearnerRunner(learn)
        self._model = ModelRunner(learn)
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

    def input_schema(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "channels": 3, "accepted_types": ACCEPTED_TYPES}

    def decode(self, uploads: list[UploadedImage]) -> list[Any]:
        """Decode every upload first, so a bad file fails the request before any compute."""
        from fastai.vision.core import PILImage

        return [PILImage(decode_image(upload)) for upload in uploads]

    def self_check(self) -> None:
        """Predict one mid-grey image of the learner's own input size."""
        from fastai.vision.core import PILImage
        from PIL import Image

        height, width = self.image_size or [64, 64]
        self.predict([PILImage(Image.new("RGB", (width, height), (128, 128, 128)))])

    def predict(self, images: list[Any]) -> list[Prediction]:
        return self.finish(images, self.forward_many([images])[0])

    def prepare(self, uploads: list[UploadedImage]) -> list[Any]:
        return self.decode(uploads)

    def forward_many(self, batch: list[list[Any]]) -> list[np.ndarray]:
        """One forward pass for several requests' images; each gets its own slice back."""
        if len(batch) == 1:
            return [self._forward(batch[0])]
        return split_rows(
            self._forward([image for images in batch for image in images]), [len(b) for b in batch]
        )

    def finish(self, images: list[Any], probs: np.ndarray) -> list[Prediction]:
        return predictions_from_probs(probs, self.classes)

    def _forward(self, images: list[Any]) -> np.ndarray:
        if not self.fast_path:  # transforms we do not know: fastai's own DataLoader
            return self._runner.probabilities(images)
        import torch
        from fastai.torch_core import TensorImage

        # fastai's own item and batch transforms, without building a DataLoader per request.
        items = [self._after_item((image,))[0] for image in images]
        batch = TensorImage(torch.stack(items)).to(self._model.device)
        (batch,) = self._after_batch((batch,))
        return self._model.probabilities(batch)

"""Vision learners: decode uploads and predict them as one batch through the learner's transforms."""

from __future__ import annotations

from typing import Any

from service.inference.base import LearnerRunner, Prediction, predictions_from_probs
from service.inference.images import ACCEPTED_TYPES, UploadedImage, decode_image


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
        probs = self._runner.probabilities(images)
        return predictions_from_probs(probs, self.classes)

"""Every recipe writes the drift reference of its training inputs (`reference.json`) beside the learner,
with the features the monitor measures for its kind and the predictions of its task."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.monitoring.drift import REFERENCE_FILE, Reference
from service.training.common import TrainResult
from tests.helpers import TABULAR, VISION


def _features(folder: Path) -> set[str]:
    reference = Reference.load(folder / REFERENCE_FILE)
    assert reference is not None and reference.source == "training" and reference.n > 0
    return set(reference.profiles)


def test_tabular_and_vision_recipes(trained_store: Path) -> None:
    assert {"age", "workclass", "predicted:prediction"} <= _features(trained_store / TABULAR)
    assert {"width", "height", "brightness", "predicted:prediction"} <= _features(trained_store / VISION)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("collab_model", {"user", "item", "predicted:prediction"}),
        ("segmentation_model", {"width", "height", "brightness"}),
    ],
)
def test_collab_and_segmentation_recipes(
    request: pytest.FixtureRequest, fixture: str, expected: set[str]
) -> None:
    result: TrainResult = request.getfixturevalue(fixture)
    features = _features(result.learner_path.parent)
    assert expected <= features
    if fixture == "segmentation_model":
        assert any(f.startswith("predicted:fraction_") for f in features)

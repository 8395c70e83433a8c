"""The table of kinds and tasks is the one place they are decided: every served entry has its codec at every
front door, recognition picks exactly one entry, and nothing else branches on a kind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import APIRouter, Query
from fastapi.routing import APIRoute

from service.api import hot
from service.api.outputs import V1_ITEMS
from service.api.problems import PREDICT_PATHS
from service.api.routes import models, tabular, vision
from service.api.v2.kinds import V2_KINDS, V2_TASKS
from service.explain.core import TARGETS
from service.explain.pool import EXPLAINERS
from service.inference.csvio import CSV_COLUMNS
from service.inference.kinds import LEARNER_TYPES, read_facts, served_types
from service.inference.labelled import LABEL_TARGETS, TABLE_TARGETS, TEXT_TARGETS
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.loading import load_exported_learner
from service.monitoring.columns import LOG_INPUTS, LOG_OUTPUTS
from service.monitoring.export import EXPORT_INPUTS, EXPORT_TRUTH
from service.monitoring.feedback import FEEDBACK_TARGETS
from service.reports.scores import SCORERS
from tests.helpers import ROOT, TABULAR, VISION
from tests.tiny import REFUSED, TASK_MODELS
from tests.tiny_collab import COLLAB_MODELS
from tests.tiny_segmentation import SEGMENTATION
from tests.tiny_text import TEXT_MODELS

# Per kind, the front doors whose codecs are keyed by task (beside v1 items, V2 outputs and scores).
DOORS_BY_KIND = {
    ModelKind.TABULAR: {"csv": CSV_COLUMNS, "evaluate": TABLE_TARGETS},
    ModelKind.VISION: {"evaluate": LABEL_TARGETS},
    ModelKind.COLLAB: {"csv": CSV_COLUMNS, "evaluate": TABLE_TARGETS},
    ModelKind.TEXT: {"csv": CSV_COLUMNS, "evaluate": TEXT_TARGETS},
}

# Kinds served without explanations (their /explain route answers 404 naming the kinds that have them).
UNEXPLAINED = {ModelKind.COLLAB}
# Tasks that take no feedback (a mask's truth is an image: /evaluate takes it).
NO_FEEDBACK = {Task.SEGMENTATION}


@pytest.mark.parametrize("entry", served_types(), ids=str)
def test_every_served_task_has_a_codec_at_every_front_door(entry: object) -> None:
    kind, task = entry.kind, entry.task  # type: ignore[attr-defined]
    assert task in V1_ITEMS[kind], f"{entry}: no /api/v1 item"
    assert kind in PREDICT_PATHS and kind in models.INPUT_SCHEMAS, f"{entry}: no /api/v1 route"
    assert kind in V2_KINDS and task in V2_TASKS, f"{entry}: no /v2 tensors"
    assert task in SCORERS, f"{entry}: no scores"
    for door, codecs in DOORS_BY_KIND[kind].items():
        assert task in codecs, f"{entry}: no {door} codec"
    # The payload log: every served kind's inputs and task's outputs have columns; feedback and the export
    # take every task but those said not to.
    assert kind in LOG_INPUTS and task in LOG_OUTPUTS, f"{entry}: no payload log columns"
    assert task in FEEDBACK_TARGETS or task in NO_FEEDBACK, f"{entry}: no feedback codec"
    if kind in EXPORT_INPUTS:
        assert task in EXPORT_TRUTH or task in NO_FEEDBACK, f"{entry}: no export codec"
    # Explanations: every task of a kind that explains says what it explains; the others are said not to.
    assert kind in EXPLAINERS or kind in UNEXPLAINED, f"{entry}: neither explained nor said not to be"
    if kind in EXPLAINERS:
        assert task in TARGETS, f"{entry}: no explained target"


def _stores(
    trained_store: Path, task_store: Path, refused_store: Path, collab_store: Path, text_store: Path
) -> list[Path]:
    return (
        [trained_store / TABULAR, trained_store / VISION, *(task_store / n for n in TASK_MODELS)]
        + [refused_store / n for n in REFUSED]
        + [collab_store / n for n in COLLAB_MODELS]
        + [text_store / n for n in TEXT_MODELS]
    )


def test_recognition_picks_exactly_one_entry_or_none(
    trained_store: Path,
    task_store: Path,
    refused_store: Path,
    collab_store: Path,
    seg_store: Path,
    text_store: Path,
) -> None:
    seen = set()
    stores = _stores(trained_store, task_store, refused_store, collab_store, text_store)
    for folder in [*stores, seg_store / SEGMENTATION]:
        facts = read_facts(load_exported_learner(folder / "model.pkl").learn)
        matched = [t for t in LEARNER_TYPES if t.matches(facts)]
        assert len(matched) <= 1, (folder.name, matched)
        if folder.name in {"vision-bbox", "image-to-image", "plain-learner"}:
            assert matched == [], folder.name
        else:
            seen.add(str(matched[0]))
    assert {str(t) for t in served_types()} <= seen  # every served entry is exercised by a tiny learner


# A branch on a kind outside the table: `kind == "vision"`, `kind is ModelKind.X`, isinstance of a predictor.
KIND_BRANCH = re.compile(
    r"kind\s*(==|!=|is not|is)\s*(ModelKind\.|[\"'](tabular|vision|text|collab))"
    r"|isinstance\([^)]*(TabularPredictor|VisionPredictor)\)"
)
# The table itself (kinds.py) and the registry's own check that a route got the kind it asked for.
ALLOWED = {"service/inference/kinds.py", "service/registry.py"}


def test_nothing_branches_on_a_kind_outside_the_table() -> None:
    offenders = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if KIND_BRANCH.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == [], "dispatch through the table of kinds and tasks instead:\n" + "\n".join(offenders)


def test_hot_routes_reproduce_everything_their_declared_route_takes() -> None:
    for module in (tabular, vision):
        for path, handler in module.HOT_ROUTES.items():
            [declared] = [r for r in module.router.routes if isinstance(r, APIRoute) and r.path == path]
            assert hot.uncovered(declared, handler) == []


def test_a_parameter_added_to_a_route_but_not_to_its_hot_handler_is_caught() -> None:
    router = APIRouter()

    @router.post("/{name}/predict")
    async def predict(
        name: str, top_k: Annotated[int | None, Query()] = None, dry_run: bool = False
    ) -> dict[str, str]:
        return {}

    [declared] = [r for r in router.routes if isinstance(r, APIRoute)]

    async def handler(*args: object) -> None:
        return None

    assert hot.uncovered(declared, hot.Hot(handler, query=frozenset({"top_k"}))) == ["query 'dry_run'"]

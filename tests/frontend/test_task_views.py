"""Every kind and task the service serves has a page and a view in the frontend (read from the JS sources:
no browser needed): `KIND_PAGES` in js/model.js, `TASK_VIEWS` in js/tasks.js, and each view has every part
that its kind's page and the model list call."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.inference.kinds import served_types
from service.inference.predictor import ModelKind
from service.inference.tasks import Task

JS = Path(__file__).resolve().parents[2] / "frontend" / "js"


def table_entries(source: str, name: str) -> dict[str, str]:
    """`export const NAME = { key: value, ... };` (one entry a line) as {key: value}."""
    found = re.search(rf"^export const {name} = \{{\n(.*?)^\}};", source, re.M | re.S)
    assert found, f"no `export const {name} = {{...}};` table"
    entries = re.findall(r"^\s+(\w+):\s*(\w+),?\s*$", found.group(1), re.M)
    return dict(entries)


def object_members(source: str, name: str) -> set[str]:
    """The top-level members (`key:` or `key(`) of `const NAME = { ... };`."""
    found = re.search(rf"^const {name} = \{{\n(.*?)^\}};", source, re.M | re.S)
    assert found, f"no `const {name} = {{...}};` object"
    return set(re.findall(r"^  (\w+)\s*[:(]", found.group(1), re.M))


def page_file(kind: str) -> str:
    """The file of the function KIND_PAGES names for `kind` (from model.js's imports)."""
    model_js = (JS / "model.js").read_text()
    function = table_entries(model_js, "KIND_PAGES")[kind]
    imported = re.search(rf'^import \{{[^}}]*\b{function}\b[^}}]*\}} from "\./([\w.]+)";', model_js, re.M)
    assert imported, f"model.js does not import {function}"
    return imported.group(1)


def used_parts(file: str) -> set[str]:
    """The parts of a task view that a page calls (`view.row(...)`, `taskView(model)?.facts(...)`)."""
    source = (JS / file).read_text()
    return set(re.findall(r"\bview\.(\w+)", source)) | set(re.findall(r"taskView\(\w+\)\?\.(\w+)", source))


SERVED = sorted({(t.kind.value, t.task.value) for t in served_types()})


def test_the_tables_are_read_and_name_only_real_kinds_and_tasks() -> None:
    views = table_entries((JS / "tasks.js").read_text(), "TASK_VIEWS")
    pages = table_entries((JS / "model.js").read_text(), "KIND_PAGES")
    assert {"classification", "multi_label", "regression", "points", "segmentation", "rating"} <= set(views)
    assert {"tabular", "vision", "text", "collab"} <= set(pages)
    assert set(views) <= {t.value for t in Task}
    assert set(pages) <= {k.value for k in ModelKind}
    assert SERVED, "served_types() lists nothing"


@pytest.mark.parametrize(("kind", "task"), SERVED, ids=[f"{k}-{t}" for k, t in SERVED])
def test_every_served_kind_and_task_has_a_page_and_a_view_with_the_parts_it_uses(
    kind: str, task: str
) -> None:
    tasks_js = (JS / "tasks.js").read_text()
    views = table_entries(tasks_js, "TASK_VIEWS")
    assert task in views, f"frontend/js/tasks.js has no view for task {task!r} (TASK_VIEWS)"
    assert kind in table_entries((JS / "model.js").read_text(), "KIND_PAGES"), (
        f"frontend/js/model.js has no page for kind {kind!r} (KIND_PAGES)"
    )
    needed = used_parts(page_file(kind)) | used_parts("models.js")
    assert needed, f"the {kind} page calls no part of a task view"
    missing = needed - object_members(tasks_js, views[task])
    assert not missing, f"the {task} view lacks {sorted(missing)}, which the {kind} page calls"


# The model list, the model page, the pages of each kind and the report page.
DISPATCHING = [
    "models.js",
    "model.js",
    "tasks.js",
    "tabular.js",
    "vision.js",
    "report.js",
    "text.js",
    "collab.js",
    "explain.js",
]


@pytest.mark.parametrize("file", DISPATCHING)
def test_the_pages_dispatch_through_the_tables_not_by_asking_the_kind_or_task(file: str) -> None:
    branches = re.findall(r"\.(?:kind|task)\s*[!=]==?\s*[\"']", (JS / file).read_text())
    assert not branches, f"{file} branches on a kind or task: {branches}"

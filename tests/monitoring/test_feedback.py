"""Feedback on logged predictions, and the export that trains a model from it: real files, a real
training run."""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd

from service.cli import main as cli
from service.monitoring.feedback import read_feedback
from service.training import data
from service.training.common import FitOptions
from service.training.tabular import TabularRecipe, train_tabular
from tests.helpers import TABULAR, adult_rows, client_for, problem
from tests.tiny import TAB_REGRESSION


async def _predicted(client: httpx.AsyncClient, name: str, rows: list[dict[str, object]]) -> list[str]:
    answer = await client.post(f"/api/v1/tabular/{name}/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    return [p["id"] for p in answer.json()["predictions"]]


async def test_feedback_is_stored_for_logged_ids_and_unknown_ones_are_reported(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    async for c in client_for(trained_store, log_dir=tmp_path, log_flush_s=60):
        ids = await _predicted(c, TABULAR, adult_rows(adult_frame, 3))
        classes = (await c.get(f"/api/v1/models/{TABULAR}")).json()["classes"]
        entries = [{"id": ids[0], "label": classes[0]}, {"id": ids[2], "label": classes[1]}]
        answer = await c.post(
            f"/api/v1/models/{TABULAR}/feedback",
            json={"feedback": [*entries, {"id": "nope-0", "label": classes[0]}]},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 2, "unknown_ids": ["nope-0"]}
    stored = read_feedback(tmp_path, TABULAR)
    assert sorted(stored["id"]) == sorted([ids[0], ids[2]])
    assert dict(zip(stored["id"], stored["label"], strict=True)) == {ids[0]: classes[0], ids[2]: classes[1]}


async def test_feedback_must_fit_the_task(
    task_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    async for c in client_for(task_store, log_dir=tmp_path, max_rows=2):
        path = f"/api/v1/models/{TAB_REGRESSION}/feedback"
        wrong = await c.post(
            path,
            json={
                "feedback": [{"id": "a-0", "label": "x"}, {"id": "a-1", "values": {"hours-per-week": "x"}}]
            },
        )
        body = problem(wrong, 422)
        assert [e["loc"] for e in body["errors"]] == [["feedback", 0], ["feedback", 1]]
        assert "hours-per-week" in body["errors"][0]["msg"]
        too_many = await c.post(
            path, json={"feedback": [{"id": f"a-{i}", "values": {"hours-per-week": 1}} for i in range(3)]}
        )
        assert "at most 2" in problem(too_many, 413)["detail"]
        problem(await c.post("/api/v1/models/nope/feedback", json={"feedback": [{"id": "a-0"}]}), 404)


async def test_feedback_needs_the_payload_log(trained_store: Path) -> None:
    async for c in client_for(trained_store):
        answer = await c.post(
            f"/api/v1/models/{TABULAR}/feedback", json={"feedback": [{"id": "a-0", "label": "x"}]}
        )
        assert "LOG_DIR" in problem(answer, 404)["detail"]


async def test_the_exported_csv_trains_a_model(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame, capsys: object
) -> None:
    """Serve, log, take feedback, export, train: the loop from serving back to training closes."""
    log_dir = tmp_path / "log"
    frame = adult_frame.dropna(subset=data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL).head(40)
    rows = adult_rows(frame, 40)
    async for c in client_for(trained_store, log_dir=log_dir, log_flush_s=60):
        ids = await _predicted(c, TABULAR, rows)
        truth = [
            {"id": i, "label": str(label)} for i, label in zip(ids, frame[data.ADULT_TARGET], strict=True)
        ]
        answer = await c.post(f"/api/v1/models/{TABULAR}/feedback", json={"feedback": truth})
        assert answer.json()["accepted"] == 40
    out = tmp_path / "export.csv"
    assert (
        cli(
            [
                "feedback",
                "export",
                TABULAR,
                "--log-dir",
                str(log_dir),
                "--store",
                str(trained_store),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    exported = pd.read_csv(out)
    assert len(exported) == 40 and data.ADULT_TARGET in exported.columns
    assert sorted(exported[data.ADULT_TARGET]) == sorted(frame[data.ADULT_TARGET].astype(str))
    result = train_tabular(
        TabularRecipe(
            csv=out,
            target=data.ADULT_TARGET,
            cat_names=list(data.ADULT_CATEGORICAL),
            cont_names=list(data.ADULT_CONTINUOUS),
            out_dir=tmp_path / "store" / "retrained",
            epochs=1,
            bs=16,
            fit=FitOptions(quiet=True),
        )
    )
    assert result.learner_path.is_file()


def test_export_says_why_it_cannot(trained_store: Path, tmp_path: Path, capsys: object) -> None:
    assert (
        cli(["feedback", "export", TABULAR, "--log-dir", str(tmp_path), "--store", str(trained_store)]) == 2
    )
    assert cli(["feedback", "export", "nope", "--log-dir", str(tmp_path), "--store", str(trained_store)]) == 2

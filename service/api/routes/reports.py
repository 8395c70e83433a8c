"""Training reports: a model's report, its plots, and several models' test metrics side by side.

(Evaluating a served model on labelled uploads lives beside predict, in the routes of its kind.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import TypeAdapter

from service.api.deps import RegistryDep
from service.errors import MSG_NO_ARTIFACT, MSG_NO_REPORT, NotFound
from service.registry import ModelEntry
from service.reports.store import ARTIFACTS, REPORT_DIR, read_report
from service.schemas.problem import Problem
from service.schemas.reports import AnyEvaluation, ModelComparison, TrainingReport

EVALUATION: TypeAdapter[AnyEvaluation] = TypeAdapter(AnyEvaluation)
router = APIRouter(tags=["reports"])


def _report(entry: ModelEntry) -> dict[str, object]:
    report = read_report(entry.folder)
    if report is None:
        raise NotFound(MSG_NO_REPORT.format(name=entry.name))
    return report


@router.get("/api/v1/models/{name}/report", response_model=TrainingReport, responses=Problem.responses(404))
def get_report(name: str, registry: RegistryDep) -> TrainingReport:
    """The model's training report: history, callbacks' outcome, test metrics, links to its plots."""
    entry = registry.get(name)
    report = _report(entry)
    files = dict(report.get("artifacts") or {})  # type: ignore[call-overload]
    report["artifacts"] = {
        key: f"/api/v1/models/{name}/report/{key}.png"
        for key in ARTIFACTS
        if key in files and (entry.folder / REPORT_DIR / f"{key}.png").is_file()
    }
    return TrainingReport.model_validate(report)


@router.get(
    "/api/v1/models/{name}/report/{artifact}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, **Problem.responses(404)},
)
def get_report_artifact(name: str, artifact: str, registry: RegistryDep) -> FileResponse:
    """One plot of the report: `loss_curve`, `top_losses` or its task's own (see `ReportArtifacts`)."""
    entry = registry.get(name)
    path = entry.folder / REPORT_DIR / f"{artifact}.png"
    # Only the known names: the path never comes from the client beyond choosing one of them.
    if artifact not in ARTIFACTS or not path.is_file() or path.is_symlink():
        raise NotFound(MSG_NO_ARTIFACT.format(name=name, artifact=artifact))
    return FileResponse(path, media_type="image/png")


@router.get("/api/v1/reports/compare", response_model=ModelComparison, responses=Problem.responses(404, 422))
def compare_models(
    registry: RegistryDep,
    models: Annotated[list[str], Query(min_length=2, description="two or more model names")],
) -> ModelComparison:
    """Test metrics of several models side by side (e.g. trained with and without augmentation)."""
    tests: list[AnyEvaluation | None] = []
    for name in models:
        test = _report(registry.get(name)).get("test")
        tests.append(EVALUATION.validate_python(test) if test else None)
    return ModelComparison(models=models, test=tests)

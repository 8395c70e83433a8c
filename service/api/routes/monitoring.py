"""After deployment: ground-truth feedback on logged predictions (needs the payload log, LOG_DIR)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from service.api.content import require_json
from service.api.deps import RegistryDep, SettingsDep
from service.errors import MSG_FEEDBACK_NO_LOG, MSG_FEEDBACK_TOO_MANY, NotFound, PayloadTooLarge
from service.monitoring.feedback import validated
from service.monitoring.payload import PayloadLog, known_ids
from service.schemas.monitoring import FeedbackRequest, FeedbackResponse
from service.schemas.problem import Problem

router = APIRouter(prefix="/api/v1/models", tags=["monitoring"])


def _known(log: PayloadLog, name: str, ids: list[str]) -> set[str]:
    """Which ids this model's log holds; this process's queue is written first, so a prediction answered a
    moment ago counts (another worker's still-queued items are written within its LOG_FLUSH_S)."""
    log.flush()
    return known_ids(log.options.folder, name, ids)


@router.post(
    "/{name}/feedback",
    response_model=FeedbackResponse,
    responses=Problem.responses(400, 401, 404, 413, 415, 422, 503),
    dependencies=[Depends(require_json)],
)
async def feedback(
    name: str, body: FeedbackRequest, request: Request, registry: RegistryDep, settings: SettingsDep
) -> FeedbackResponse:
    """The true answers of logged predictions, by prediction id (`label`, `labels`, `values`, `points` or
    `rating`, as the model's task has it), stored beside the payload log; ids the log does not hold are
    reported in `unknown_ids`, not stored."""
    log: PayloadLog | None = request.app.state.payload_log
    if log is None:
        raise NotFound(MSG_FEEDBACK_NO_LOG.format(name=name))
    _, predictor = registry.ready(name)
    if len(body.feedback) > settings.max_rows:
        raise PayloadTooLarge(MSG_FEEDBACK_TOO_MANY.format(count=len(body.feedback), limit=settings.max_rows))
    rows = validated(name, predictor.head, [entry.model_dump() for entry in body.feedback])
    known = await run_in_threadpool(_known, log, name, [row["id"] for row in rows])
    accepted = [row for row in rows if row["id"] in known]
    if accepted:
        await run_in_threadpool(request.app.state.feedback.write, name, accepted)
    return FeedbackResponse(
        accepted=len(accepted), unknown_ids=[row["id"] for row in rows if row["id"] not in known]
    )

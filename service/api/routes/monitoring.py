"""After deployment (needs the payload log, LOG_DIR): ground-truth feedback on logged predictions, and
the monitor (recent predictions, live scores, drift) with its reference."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api import tables
from service.api.content import require_json
from service.api.deps import AdminDep, BatchersDep, RegistryDep, SettingsDep
from service.api.limits import check_files
from service.api.uploads import read_images
from service.errors import (
    MSG_FEEDBACK_NO_LOG,
    MSG_FEEDBACK_TOO_MANY,
    MSG_MONITOR_NO_LOG,
    MSG_MONITOR_WINDOW,
    MSG_REFERENCE_INPUT,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from service.inference.predictor import ModelKind
from service.monitoring.drift import build_reference
from service.monitoring.feedback import validated
from service.monitoring.monitor import DEFAULT_WINDOW, Monitor
from service.monitoring.payload import PayloadLog, known_ids
from service.schemas.monitoring import FeedbackRequest, FeedbackResponse, MonitorResponse, ReferenceSummary
from service.schemas.problem import Problem
from service.settings import Settings

router = APIRouter(prefix="/api/v1/models", tags=["monitoring"])
_WINDOW = re.compile(r"^\s*(\d{1,6})\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


def _since(since: dt.datetime | None, window: str | None) -> dt.datetime:
    if since is not None:
        return since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    length = DEFAULT_WINDOW
    if window is not None:
        match = _WINDOW.match(window)
        if match is None:
            raise InvalidInput(
                MSG_MONITOR_WINDOW.format(window=window),
                [{"loc": ["query", "window"], "msg": "e.g. 30m, 1h, 7d", "type": "window"}],
            )
        length = dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    return dt.datetime.now(dt.UTC) - length


def _monitor(request: Request) -> Monitor:
    monitor: Monitor | None = request.app.state.monitor
    if monitor is None:
        raise NotFound(MSG_MONITOR_NO_LOG)
    return monitor


@router.get(
    "/{name}/monitor", response_model=MonitorResponse, responses=Problem.responses(401, 404, 422, 503)
)
async def monitor(
    name: str,
    request: Request,
    registry: RegistryDep,
    since: Annotated[dt.datetime | None, Query(description="ISO time: the window starts here")] = None,
    window: Annotated[str | None, Query(description="or the last 30m, 1h (default), 7d, …")] = None,
) -> MonitorResponse:
    """Recent predictions of the model (from the payload log of every worker): counts, the predicted
    distribution, live scores on their feedback, and drift of every input and of the predictions against
    the model's reference (PSI: < 0.1 ok, < 0.25 warn, else alert)."""
    watcher = _monitor(request)
    entry, predictor = registry.ready(name)
    start = _since(since, window)
    body = await run_in_threadpool(
        partial(
            watcher.snapshot,
            name,
            version=entry.version,
            predictor=predictor,
            model_folder=entry.folder,
            since=start,
        )
    )
    return MonitorResponse(**body)


@router.post(
    "/{name}/monitor/reference",
    response_model=ReferenceSummary,
    responses=Problem.responses(400, 401, 403, 404, 413, 415, 422, 503),
    dependencies=[AdminDep],
)
async def upload_reference(
    name: str,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile | None, File(description="tabular, text, collab: a CSV of inputs")] = None,
    files: Annotated[list[UploadFile] | None, File(description="vision: images")] = None,
) -> ReferenceSummary:
    """Set the model's drift reference from data like its training data (admin): a CSV of inputs, or
    images; replaces the reference `fastai-serve train` wrote."""
    watcher = _monitor(request)
    entry, predictor = registry.ready(name)
    parts = []
    for prepared in await reference_inputs(predictor, file=file, files=files, settings=settings):
        parts.append((prepared, await batchers.run(entry, predictor, prepared)))
    reference = await run_in_threadpool(partial(build_reference, predictor, parts, source="upload"))
    await run_in_threadpool(reference.save, watcher.reference_path(name))
    return ReferenceSummary(source=reference.source, n=reference.n, features=sorted(reference.profiles))


async def _csv_parts(predictor: Any, file: UploadFile, prepare: Callable[[Any, Any], Any]) -> list[Any]:
    table = await tables.read_table(file)
    name = file.filename or "reference.csv"
    return [await run_in_threadpool(prepare, chunk, name) async for chunk in tables.table_chunks(table)]


def _texts(predictor: Any, chunk: Any, filename: str) -> Any:
    frame = chunk.frame()
    if "text" not in frame.columns:
        raise InvalidInput(MSG_REFERENCE_INPUT.format(kind="text", expected="a CSV with a `text` column"))
    return predictor.prepare(frame["text"].astype(str).tolist())


async def _images(
    predictor: Any, file: UploadFile | None, files: list[UploadFile] | None, settings: Settings
) -> list[Any]:
    if not files:
        raise InvalidInput(MSG_REFERENCE_INPUT.format(kind=predictor.kind.value, expected="`files`: images"))
    check_files(len(files), settings.max_eval_files)
    return [await run_in_threadpool(predictor.prepare, await read_images(files))]


def _from_csv(prepare: Callable[[Any, Any, str], Any]) -> Callable[..., Awaitable[list[Any]]]:
    """A kind whose reference is a CSV of inputs, its chunks prepared by `prepare`."""

    async def read(
        predictor: Any, file: UploadFile | None, files: list[UploadFile] | None, settings: Settings
    ) -> list[Any]:
        if file is None:
            expected = "`file`: a CSV of inputs"
            raise InvalidInput(MSG_REFERENCE_INPUT.format(kind=predictor.kind.value, expected=expected))
        return await _csv_parts(predictor, file, partial(prepare, predictor))

    return read


def _chunk(predictor: Any, chunk: Any, filename: str) -> Any:
    return predictor.prepare_chunk(chunk, filename=filename)


# How each kind's reference upload becomes prepared inputs: a CSV's chunks, or images.
REFERENCE_UPLOADS: dict[ModelKind, Callable[..., Awaitable[list[Any]]]] = {
    ModelKind.TABULAR: _from_csv(_chunk),
    ModelKind.COLLAB: _from_csv(_chunk),
    ModelKind.TEXT: _from_csv(_texts),
    ModelKind.VISION: _images,
}


async def reference_inputs(
    predictor: Any, *, file: UploadFile | None, files: list[UploadFile] | None, settings: Settings
) -> list[Any]:
    upload = REFERENCE_UPLOADS[predictor.kind]
    prepared: list[Any] = await upload(predictor, file, files, settings)
    return prepared

"""The Open Inference Protocol's REST endpoints (KServe V2, as Triton speaks it), beside /api/v1.

A thin adapter over the same registry, batcher and `Predictor`s: parse tensors (`codec`), turn them into
what the kind's `prepare` takes (`kinds`), `batchers.run`, `finish`, and write the outputs back as
tensors. Refusals are `{"error": "..."}` (`service.api.problems` hands every /v2 error to `errors`).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service import __version__
from service.api.deps import (
    BatchersDep,
    RegistryDep,
    SettingsDep,
    get_app_settings,
    get_batchers,
    get_registry,
)
from service.api.hot import Hot
from service.api.limits import MAX_TOP_K, MIN_TOP_K
from service.api.v2.codec import (
    BINARY_MEDIA_TYPE,
    HEADER_LENGTH,
    OutputTensor,
    Tensor,
    encode_response,
    read_request,
)
from service.api.v2.kinds import (
    TOP_K,
    V2_KINDS,
    model_inputs,
    model_outputs,
    offers_top_k,
    outputs_for,
)
from service.errors import (
    MSG_V2_DUPLICATE,
    MSG_V2_NO_VERSION,
    MSG_V2_NOT_READY,
    MSG_V2_THRESHOLD,
    MSG_V2_TOP_K,
    MSG_V2_UNKNOWN_OUTPUTS,
    BadRequest,
    ModelNotFound,
    ModelNotReady,
)
from service.inference.batching import ModelPool
from service.inference.predictor import AnyPredictor
from service.inference.tasks import Task
from service.registry import ModelEntry, ModelRegistry, ModelStatus
from service.schemas.v2 import (
    InferenceError,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from service.settings import Settings
from service.telemetry import item_ids

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])
EXTENSIONS = ["binary_tensor_data"]
# Parsing a small header costs less than a hop to a worker thread; larger bodies go off the event loop.
INLINE_BYTES = 64 * 1024


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": InferenceError, "description": "the protocol's error body"} for s in statuses}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` written in place (an OpenAPI request body cannot hold them)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "The inference request as JSON; with Triton's binary tensor data extension, the JSON header "
            f"({HEADER_LENGTH} bytes long) followed by each binary input in order."
        ),
        "content": {"application/json": {"schema": _inline(InferenceRequest.model_json_schema())}},
    }
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferenceResponse,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the outputs (JSON, or JSON header then binary outputs when asked for)",
    },
    **_errors(400, 404, 413, 503),
}
Version = Annotated[str, Path(description="the loaded model's version (any other is 404)")]


def served_model(registry: ModelRegistry, name: str, version: str | None) -> tuple[ModelEntry, AnyPredictor]:
    """The ready model, as whichever kind it is: 404 unknown (or another version), 503 not ready."""
    entry, predictor = registry.ready(name)
    if version is not None and version != entry.version:
        raise ModelNotFound(MSG_V2_NO_VERSION.format(name=name, version=version, serving=entry.version))
    return entry, predictor


def server_is_ready(registry: ModelRegistry) -> bool:
    """Loading has finished and at least one model is ready (REST and gRPC alike)."""
    states = [entry.status for entry in registry.entries()]
    return registry.loading_done and ModelStatus.READY in states


# -- server --------------------------------------------------------------------------------------------
@router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Server metadata: name, version and the protocol extensions it speaks."""
    return ServerMetadata(name="fastai-serve", version=__version__, extensions=EXTENSIONS)


@router.get("/health/live", response_model=ServerLive)
async def server_live() -> ServerLive:
    """200 while the process runs."""
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses=_errors(503))
async def server_ready(registry: RegistryDep) -> ServerReady:
    """200 once loading has finished and at least one model is ready; 503 otherwise."""
    if not server_is_ready(registry):
        raise ModelNotReady(MSG_V2_NOT_READY)
    return ServerReady(ready=True)


# -- model metadata and readiness -----------------------------------------------------------------------
def metadata_of(registry: ModelRegistry, name: str, version: str | None) -> ModelMetadata:
    entry, predictor = served_model(registry, name, version)
    return ModelMetadata(
        name=entry.name,
        versions=[entry.version or ""],
        platform=f"fastai_{predictor.kind.value}",
        inputs=model_inputs(predictor),
        outputs=model_outputs(predictor),
        parameters={
            "kind": predictor.kind.value,
            "task": predictor.head.task.value,
            "classes": predictor.head.classes,
            "targets": predictor.head.targets,
        },
    )


@router.get("/models/{name}", response_model=ModelMetadata, responses=_errors(404, 503))
async def model_metadata(name: str, registry: RegistryDep) -> ModelMetadata:
    """Model metadata: every input (datatype, shape, categories) and output (class names)."""
    return metadata_of(registry, name, None)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_errors(404, 503))
async def model_version_metadata(name: str, version: Version, registry: RegistryDep) -> ModelMetadata:
    """Model metadata of one version (the loaded one)."""
    return metadata_of(registry, name, version)


@router.get("/models/{name}/ready", response_model=ModelReady, responses=_errors(404, 503))
async def model_ready(name: str, registry: RegistryDep) -> ModelReady:
    """200 when the model is ready; 503 while it loads or once it failed; 404 when there is none."""
    served_model(registry, name, None)
    return ModelReady(name=name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReady, responses=_errors(404, 503))
async def model_version_ready(name: str, version: Version, registry: RegistryDep) -> ModelReady:
    """200 when this version of the model is ready."""
    served_model(registry, name, version)
    return ModelReady(name=name, ready=True)


# -- inference -------------------------------------------------------------------------------------------
def _top_k(request: InferenceRequest, predictor: AnyPredictor, settings: Settings) -> int | None:
    """The `top_k` output's k (image classifiers): `parameters.top_k`, else the default when `top_k` is
    asked for."""
    if not offers_top_k(predictor):
        return None
    value = (request.parameters or {}).get("top_k")
    if value is None:
        asked = request.outputs is not None and any(o.name == TOP_K for o in request.outputs)
        return settings.default_top_k if asked else None
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_TOP_K <= value <= MAX_TOP_K:
        raise BadRequest(MSG_V2_TOP_K.format(limit=MAX_TOP_K, value=value))
    return value


def _threshold(request: InferenceRequest, predictor: AnyPredictor) -> float | None:
    """A multi-label model's `parameters.threshold`, strictly between 0 and 1."""
    value = (request.parameters or {}).get("threshold")
    if value is None:
        return None
    valid = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1
    if not valid or predictor.head.task is not Task.MULTI_LABEL:
        raise BadRequest(MSG_V2_THRESHOLD.format(value=value, task=predictor.head.task.value))
    return float(value)


def _check_outputs(request: InferenceRequest, predictor: AnyPredictor) -> None:
    if request.outputs is None:
        return
    names = [o.name for o in request.outputs]
    known = [o.name for o in model_outputs(predictor)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadRequest(
            MSG_V2_UNKNOWN_OUTPUTS.format(names=", ".join(map(repr, unknown)), expected=", ".join(known))
        )
    for i, n in enumerate(names):
        if n in names[:i]:
            raise BadRequest(MSG_V2_DUPLICATE.format(what="output", name=n))


def _selected(
    request: InferenceRequest, available: dict[str, OutputTensor]
) -> list[tuple[OutputTensor, bool]]:
    """The outputs to send (those asked for, else all) and whether each goes as binary data."""
    binary = bool((request.parameters or {}).get("binary_data_output", False))
    if request.outputs is None:
        return [(output, binary) for output in available.values()]
    return [
        (available[o.name], bool((o.parameters or {}).get("binary_data", binary))) for o in request.outputs
    ]


async def _prepare(predictor: AnyPredictor, tensors: list[Tensor], settings: Settings) -> Any:
    kind = V2_KINDS[predictor.kind]
    prepare = partial(kind.prepare, predictor, tensors, settings)
    rows = max((t.data.shape[0] if t.data.ndim else 1 for t in tensors), default=0)
    return prepare() if rows <= kind.inline_rows else await run_in_threadpool(prepare)


async def infer_tensors(
    parsed: InferenceRequest,
    tensors: list[Tensor],
    *,
    entry: ModelEntry,
    predictor: AnyPredictor,
    settings: Settings,
    batchers: ModelPool,
) -> tuple[dict[str, Any], list[tuple[OutputTensor, bool]]]:
    """A decoded request through the model: the response's header fields and the outputs to send (each
    with whether it goes as binary data). Both front doors, REST and gRPC, answer through this."""
    _check_outputs(parsed, predictor)
    top_k = _top_k(parsed, predictor, settings)
    threshold = _threshold(parsed, predictor)
    prepared = await _prepare(predictor, tensors, settings)
    outputs = await batchers.run(entry, predictor, prepared)
    predictions = predictor.finish(prepared, outputs, threshold=threshold)
    header: dict[str, Any] = {"model_name": entry.name, "model_version": entry.version}
    if parsed.id is not None:
        header["id"] = parsed.id
    parameters: dict[str, Any] = {}
    ids = item_ids(len(predictions))
    if ids is not None:  # each prediction's id, as the payload log keeps it (feedback names it)
        parameters["ids"] = ids
    if any(p.warnings for p in predictions):
        parameters["warnings"] = [p.warnings for p in predictions]
    if parameters:
        header["parameters"] = parameters
    answer = outputs_for(predictor, predictions, outputs, top_k=top_k)
    return header, _selected(parsed, answer)


async def _infer(
    request: Request,
    body: bytes,
    *,
    name: str,
    version: str | None,
    registry: ModelRegistry,
    settings: Settings,
    batchers: ModelPool,
) -> Response:
    entry, predictor = served_model(registry, name, version)
    read = partial(read_request, body, request.headers.get(HEADER_LENGTH))
    parsed, tensors = read() if len(body) <= INLINE_BYTES else await run_in_threadpool(read)
    header, selected = await infer_tensors(
        parsed, tensors, entry=entry, predictor=predictor, settings=settings, batchers=batchers
    )
    content, response_header_length = encode_response(header, selected)
    if response_header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type=BINARY_MEDIA_TYPE, headers={HEADER_LENGTH: str(response_header_length)}
    )


@router.post("/models/{name}/infer", responses=INFER_RESPONSES, openapi_extra=INFER_BODY)
async def infer(
    name: str, request: Request, registry: RegistryDep, settings: SettingsDep, batchers: BatchersDep
) -> Response:
    """Inference: tensors in, the task's outputs out (`label`/`probabilities`/`top_k`, `predicted`, `values`
    or `points`); JSON or binary tensor data."""
    return await _infer(
        request,
        await request.body(),
        name=name,
        version=None,
        registry=registry,
        settings=settings,
        batchers=batchers,
    )


async def infer_hot(request: Request, body: bytes) -> Response:
    """`infer` for a body small enough for the hot path: it takes nothing FastAPI would parse or check (no
    query, no body schema), so every request is the same `_infer`, errors included."""
    registry, settings = await get_registry(request), await get_app_settings(request)
    batchers = await get_batchers(request)
    return await _infer(
        request,
        body,
        name=request.path_params["name"],
        version=None,
        registry=registry,
        settings=settings,
        batchers=batchers,
    )


# Served by `hot.HotRoute` first when the body is small (api/hot.py): a one-row request spent most of its
# time in FastAPI's routing and dependencies.
HOT_ROUTES: dict[str, Hot] = {
    f"{router.prefix}/models/{{name}}/infer": Hot(
        infer_hot, dependencies=frozenset({"get_registry", "get_app_settings", "get_batchers"})
    )
}


@router.post("/models/{name}/versions/{version}/infer", responses=INFER_RESPONSES, openapi_extra=INFER_BODY)
async def infer_version(
    name: str,
    version: Version,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
) -> Response:
    """Inference on one version of the model (the loaded one)."""
    return await _infer(
        request,
        await request.body(),
        name=name,
        version=version,
        registry=registry,
        settings=settings,
        batchers=batchers,
    )

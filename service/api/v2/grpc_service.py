"""The Open Inference Protocol over gRPC: KServe/Triton's `inference.GRPCInferenceService` (ServerLive,
ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelInfer), so `tritonclient.grpc` works unchanged.

It runs on grpcio's asyncio server in the FastAPI app's own process and event loop (started and stopped in
the app's lifespan), so it shares the registry, the batcher pool, the limits, the API keys and rate limit
(`ModelGate`, the same `RateLimiter`) and the metrics. It is another front door onto the REST /v2 path,
not a second implementation: tensors are decoded by `codec` (raw contents as the binary extension's data),
turned into what a model takes by the kind and task tables of `kinds`, and run and encoded by
`routes.infer_tensors`. Answers always carry `raw_output_contents` (as Triton's do).

Domain errors become gRPC status codes with the REST message (`GRPC_CODES`); a request over the upload
limit is refused by grpc itself (RESOURCE_EXHAUSTED) before it is parsed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from service import __version__
from service.api.access import ModelGate, presented_key
from service.api.middleware import client_request_id
from service.api.v2.codec import OutputTensor, Tensor, decode_binary, decode_elements, output_bytes
from service.api.v2.errors import error_message
from service.api.v2.proto import grpc_predict_v2_pb2 as pb
from service.api.v2.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service.api.v2.routes import EXTENSIONS, infer_tensors, metadata_of, served_model, server_is_ready
from service.errors import (
    MSG_GRPC_BIND,
    MSG_GRPC_CONTENTS,
    MSG_GRPC_NO_CONTENTS_FIELD,
    MSG_INTERNAL,
    MSG_REQUEST_TIMEOUT,
    MSG_V2_BAD_REQUEST,
    MSG_V2_DUPLICATE,
    BadRequest,
    ModelNotFound,
    ModelNotReady,
    RequestTimeout,
    ServiceError,
)
from service.inference.batching import ModelPool
from service.registry import ModelRegistry
from service.schemas.v2 import InferenceRequest, MetadataTensor, RequestInput, RequestOutput
from service.settings import Settings
from service.telemetry import Metrics, RequestContext, current_request, request_served_by, request_timings

logger = logging.getLogger(__name__)
access_log = logging.getLogger("fastai_serve.access")

SERVICE = "inference.GRPCInferenceService"
PROTOCOL = "grpc"  # the `protocol` label of the request metrics
MAX_DIMS = 8  # as RequestInput.shape on REST
# The REST status of a domain error, as the gRPC code a client's library knows it by.
GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# The `contents` field that holds each datatype's elements (FP16 has none: raw only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
T = TypeVar("T")


# -- messages <-> the REST path's request and tensors ----------------------------------------------------
def _value(parameter: pb.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def _values(parameters: Any) -> dict[str, Any]:
    return {key: _value(parameter) for key, parameter in parameters.items()}


def _set_parameter(target: pb.InferParameter, value: Any) -> None:
    """A parameter as the protocol's scalar; lists and objects (class names, warnings) as JSON text."""
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    elif isinstance(value, str):
        target.string_param = value
    else:
        target.string_param = json.dumps(value, separators=(",", ":"))


def _set_parameters(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if value is not None:
            _set_parameter(target[key], value)


def read_message(request: pb.ModelInferRequest) -> tuple[InferenceRequest, list[Tensor]]:
    """A ModelInferRequest as the REST path's request and decoded tensors: raw contents as binary
    tensor data, typed `contents` element by element; every malformed one is a `BadRequest`."""
    if not request.inputs:
        raise BadRequest(MSG_V2_BAD_REQUEST.format(reason="inputs: send at least one input"))
    raw = request.raw_input_contents
    specs, tensors, seen = [], [], set()
    for i, tensor in enumerate(request.inputs):
        if tensor.name in seen:
            raise BadRequest(MSG_V2_DUPLICATE.format(what="input", name=tensor.name))
        seen.add(tensor.name)
        if len(tensor.shape) > MAX_DIMS:
            reason = f"{tensor.name}: shape has {len(tensor.shape)} dimensions; at most {MAX_DIMS}"
            raise BadRequest(MSG_V2_BAD_REQUEST.format(reason=reason))
        spec = RequestInput.model_construct(
            name=tensor.name,
            shape=list(tensor.shape),
            datatype=tensor.datatype,
            parameters=_values(tensor.parameters),
            data=None,
        )
        specs.append(spec)
        if raw:
            if len(raw) != len(request.inputs) or tensor.HasField("contents"):
                contents = MSG_GRPC_CONTENTS.format(
                    name=tensor.name, inputs=len(request.inputs), raw=len(raw)
                )
                raise BadRequest(contents)
            tensors.append(decode_binary(spec, raw[i]))
            continue
        field = CONTENTS_FIELDS.get(tensor.datatype)
        if field is None and tensor.datatype == "FP16":
            raise BadRequest(MSG_GRPC_NO_CONTENTS_FIELD.format(name=tensor.name, datatype=tensor.datatype))
        values = getattr(tensor.contents, field) if field is not None else []
        tensors.append(decode_elements(spec, values))
    outputs = [
        RequestOutput.model_construct(name=o.name, parameters=_values(o.parameters)) for o in request.outputs
    ]
    parsed = InferenceRequest.model_construct(
        id=request.id or None,
        parameters=_values(request.parameters),
        inputs=specs,
        outputs=outputs or None,
    )
    return parsed, tensors


def infer_response(header: dict[str, Any], outputs: list[tuple[OutputTensor, bool]]) -> pb.ModelInferResponse:
    """The answer with every output's elements in `raw_output_contents` (binary or not: gRPC has no JSON)."""
    response = pb.ModelInferResponse(
        model_name=header["model_name"],
        model_version=header.get("model_version") or "",
        id=header.get("id", ""),
    )
    _set_parameters(response.parameters, header.get("parameters") or {})
    for output, _binary in outputs:
        tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=output.data.shape)
        _set_parameters(tensor.parameters, output.parameters)
        response.raw_output_contents.append(output_bytes(output))
    return response


def _peer_address(peer: str) -> str:
    """`ipv4:1.2.3.4:5678` / `ipv6:[::1]:5678` as the address alone (the rate limit's client)."""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0] if rest.count(":") >= 1 else rest
    return host.strip("[]") or peer


# -- the service -----------------------------------------------------------------------------------------
class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Each RPC over the app's registry, batcher pool and settings; model RPCs behind the app's gate."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        batchers: ModelPool,
        settings: Settings,
        metrics: Metrics,
        gate: ModelGate,
    ) -> None:
        self.registry = registry
        self.batchers = batchers
        self.settings = settings
        self.metrics = metrics
        self.gate = gate

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return await self._call(
            "ServerLive", "", context, lambda: _done(pb.ServerLiveResponse(live=True)), protected=False
        )

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        ready = server_is_ready(self.registry)
        return await self._call(
            "ServerReady", "", context, lambda: _done(pb.ServerReadyResponse(ready=ready)), protected=False
        )

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        answer = pb.ServerMetadataResponse(name="fastai-serve", version=__version__, extensions=EXTENSIONS)
        return await self._call("ServerMetadata", "", context, lambda: _done(answer), protected=False)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        async def ready() -> pb.ModelReadyResponse:
            # As tritonclient's is_model_ready reads it: a plain no for unknown, loading or failed models.
            try:
                served_model(self.registry, request.name, request.version or None)
            except (ModelNotFound, ModelNotReady):
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._call("ModelReady", request.name, context, ready, protected=True)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        async def metadata() -> pb.ModelMetadataResponse:
            meta = metadata_of(self.registry, request.name, request.version or None)
            return pb.ModelMetadataResponse(
                name=meta.name,
                versions=meta.versions,
                platform=meta.platform,
                inputs=[_tensor_metadata(t) for t in meta.inputs],
                outputs=[_tensor_metadata(t) for t in meta.outputs],
            )

        return await self._call("ModelMetadata", request.name, context, metadata, protected=True)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        async def infer() -> pb.ModelInferResponse:
            entry, predictor = served_model(self.registry, request.model_name, request.model_version or None)
            parsed, tensors = read_message(request)
            header, selected = await infer_tensors(
                parsed,
                tensors,
                entry=entry,
                predictor=predictor,
                settings=self.settings,
                batchers=self.batchers,
            )
            return infer_response(header, selected)

        return await self._call("ModelInfer", request.model_name, context, infer, protected=True)

    async def _call(
        self,
        rpc: str,
        model: str,
        context: Any,
        work: Callable[[], Awaitable[T]],
        *,
        protected: bool,
    ) -> T:
        """`work` under the gate (model RPCs), the request time limit, the metrics and one log line; a
        domain error ends the call with its gRPC code and the REST message."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        served_by: list[str] = []
        token, served_token = request_timings.set(timings), request_served_by.set(served_by)
        metadata = [(k.lower().encode(), _as_bytes(v)) for k, v in (context.invocation_metadata() or ())]
        # The payload log's and the answer's item ids: the client's `x-request-id` metadata when sane.
        request = RequestContext(
            request_id=client_request_id(dict(metadata)), protocol=PROTOCOL, started=started
        )
        request_token = current_request.set(request)
        code = grpc.StatusCode.OK
        try:
            error = None
            if protected and self.gate.active:
                error = self.gate.admit(presented_key(metadata), _peer_address(context.peer()))
            if error is None:
                try:
                    async with asyncio.timeout(self.settings.request_timeout_s):
                        return await work()
                except TimeoutError:
                    error = RequestTimeout(
                        MSG_REQUEST_TIMEOUT.format(seconds=self.settings.request_timeout_s)
                    )
                except ServiceError as exc:
                    error = exc
                except Exception:
                    # Not a domain error: the log gets the traceback, the client a plain message.
                    logger.exception("gRPC %s failed", rpc)
                    error = ServiceError(MSG_INTERNAL)
            code = GRPC_CODES.get(error.status, grpc.StatusCode.INTERNAL)
            if "Retry-After" in error.headers:
                context.set_trailing_metadata((("retry-after", error.headers["Retry-After"]),))
            await context.abort(code, error_message(error))
            raise AssertionError("abort returns only by raising")  # pragma: no cover
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away or its deadline passed
            raise
        finally:
            request_timings.reset(token)
            request_served_by.reset(served_token)
            current_request.reset(request_token)
            route = f"/{SERVICE}/{rpc}"
            self.metrics.requests.labels(model, route, code.name, PROTOCOL).inc()
            self.metrics.request_seconds.labels(model, route, PROTOCOL).observe(time.perf_counter() - started)
            if access_log.isEnabledFor(logging.INFO):
                _log(route, model, code, started, timings, metadata, context.peer())


async def _done(value: T) -> T:
    return value


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1", "replace")


def _tensor_metadata(tensor: MetadataTensor) -> pb.ModelMetadataResponse.TensorMetadata:
    # The REST metadata's `parameters` (classes, categories) have no field here: they travel on the
    # outputs of each answer, and GET /v2/models/{name} has them all.
    return pb.ModelMetadataResponse.TensorMetadata(
        name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
    )


def _log(
    route: str,
    model: str,
    code: grpc.StatusCode,
    started: float,
    timings: dict[str, float],
    metadata: list[tuple[bytes, bytes]],
    peer: str,
) -> None:
    incoming = dict(metadata).get(b"x-request-id", b"").decode("latin-1")
    line: dict[str, Any] = {
        "event": "request",
        "request_id": incoming[:64] or uuid.uuid4().hex,
        "method": "gRPC",
        "path": route,
        "route": route,
        "model": model or None,
        "status": code.name,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        **{f"{k}_ms": round(v, 2) for k, v in timings.items()},
        "client": _peer_address(peer),
    }
    access_log.info(json.dumps(line))


# -- the server, in the app's lifespan -------------------------------------------------------------------
async def start_grpc(
    *,
    settings: Settings,
    registry: ModelRegistry,
    batchers: ModelPool,
    metrics: Metrics,
    gate: ModelGate,
) -> tuple[grpc.aio.Server, int] | None:
    """The gRPC server on `GRPC_PORT` in this event loop, started, and the port it listens on (None
    when GRPC_PORT is 0). A port it cannot bind stops the start-up, saying which."""
    if settings.grpc_port == 0:
        return None
    server = grpc.aio.server(
        options=[
            # The upload limit, checked by grpc before a message is parsed (RESOURCE_EXHAUSTED).
            ("grpc.max_receive_message_length", settings.max_upload_bytes),
            # Answers are not limited on REST either (a batch of masks may be larger than its JPEGs).
            ("grpc.max_send_message_length", -1),
            # Several uvicorn workers each serve gRPC on the one port (the kernel spreads connections);
            # one worker must not share it with another server that happens to listen there.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ]
    )
    servicer = InferenceServicer(
        registry=registry, batchers=batchers, settings=settings, metrics=metrics, gate=gate
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise RuntimeError(MSG_GRPC_BIND.format(address=address))
    await server.start()
    logger.info("gRPC (Open Inference Protocol) listening on %s", address)
    return server, port

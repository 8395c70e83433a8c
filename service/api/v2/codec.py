"""Tensors on the wire of the Open Inference Protocol: JSON `data`, and Triton's binary tensor data
extension (the JSON header, then each binary tensor in input order; `Inference-Header-Content-Length`
gives the header's length; little-endian, row-major; a BYTES element is a 4-byte little-endian length
and its bytes).

Knows nothing about models: it turns a request body into named numpy tensors of the declared datatype
and shape, and outputs back into a body. Every malformed body is a `BadRequest` saying what is wrong.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from service.errors import (
    MSG_V2_BAD_JSON,
    MSG_V2_BAD_REQUEST,
    MSG_V2_BINARY_LEFTOVER,
    MSG_V2_BINARY_PAST_END,
    MSG_V2_BYTES_ELEMENT,
    MSG_V2_DATA_COUNT,
    MSG_V2_DATA_TYPE,
    MSG_V2_DUPLICATE,
    MSG_V2_HEADER_LENGTH,
    MSG_V2_NO_DATA,
    MSG_V2_UNKNOWN_DATATYPE,
    BadRequest,
)
from service.schemas.v2 import InferenceRequest, RequestInput

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
NUMERIC_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(dtype).newbyteorder("<")
    for name, dtype in {
        "BOOL": np.bool_,
        "UINT8": np.uint8,
        "UINT16": np.uint16,
        "UINT32": np.uint32,
        "UINT64": np.uint64,
        "INT8": np.int8,
        "INT16": np.int16,
        "INT32": np.int32,
        "INT64": np.int64,
        "FP16": np.float16,
        "FP32": np.float32,
        "FP64": np.float64,
    }.items()
}
FLOAT_TYPES = {"FP16", "FP32", "FP64"}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    """One decoded input: `data` has the declared shape. BYTES data is an object array of `bytes` (sent
    as binary) or `str` (sent as JSON text); a JSON null is None there, and NaN in a float tensor."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputTensor:
    """One output to send: numeric data, or for BYTES an array of `str`."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


def read_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, list[Tensor]]:
    """The request's JSON header, validated, and its inputs as tensors (binary ones cut from the body)."""
    if header_length is None:
        header, tail = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest(MSG_V2_HEADER_LENGTH.format(value=header_length, size=len(body)))
        header, tail = body[: int(header_length)], body[int(header_length) :]
    try:  # pydantic's own JSON parser: half the cost of json.loads then validating the objects
        request = InferenceRequest.model_validate_json(header)
    except ValidationError:
        request = _validated(header)  # the same refusal, worded as it always was
    tensors, offset = [], 0
    seen: set[str] = set()
    for spec in request.inputs:
        if spec.name in seen:
            raise BadRequest(MSG_V2_DUPLICATE.format(what="input", name=spec.name))
        seen.add(spec.name)
        size = (spec.parameters or {}).get("binary_data_size")
        if size is None:
            tensors.append(decode_json(spec))
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(MSG_V2_BAD_REQUEST.format(reason=f"{spec.name}: binary_data_size {size!r}"))
        if offset + size > len(tail):
            raise BadRequest(MSG_V2_BINARY_PAST_END.format(name=spec.name))
        tensors.append(decode_binary(spec, tail[offset : offset + size]))
        offset += size
    if offset != len(tail):
        raise BadRequest(MSG_V2_BINARY_LEFTOVER.format(count=len(tail) - offset))
    return request, tensors


def _validated(header: bytes) -> InferenceRequest:
    """The header parsed by `json`, then validated: a BadRequest naming what is wrong (or, for what only
    pydantic's JSON parser refuses, such as a NaN literal, the request as `json` reads it)."""
    try:
        raw = json.loads(header)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(MSG_V2_BAD_JSON.format(reason=exc)) from None
    try:
        return InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(MSG_V2_BAD_REQUEST.format(reason=_validation_reason(exc))) from None


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])


def _shape(spec: RequestInput) -> tuple[tuple[int, ...], int]:
    if spec.shape and min(spec.shape) < 0:
        raise BadRequest(MSG_V2_BAD_REQUEST.format(reason=f"{spec.name}: negative dimension in {spec.shape}"))
    return tuple(spec.shape), math.prod(spec.shape)


def _check_datatype(spec: RequestInput) -> None:
    if spec.datatype != "BYTES" and spec.datatype not in NUMERIC_DTYPES:
        raise BadRequest(MSG_V2_UNKNOWN_DATATYPE.format(name=spec.name, datatype=spec.datatype))


def decode_binary(spec: RequestInput, raw: bytes) -> Tensor:
    """A tensor from its binary data: little-endian elements, or length-prefixed BYTES elements."""
    _check_datatype(spec)
    shape, count = _shape(spec)
    if spec.datatype == "BYTES":
        elements: list[bytes] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise BadRequest(MSG_V2_BYTES_ELEMENT.format(name=spec.name))
            (length,) = _LENGTH.unpack_from(raw, offset)
            if offset + 4 + length > len(raw):
                raise BadRequest(MSG_V2_BYTES_ELEMENT.format(name=spec.name))
            elements.append(raw[offset + 4 : offset + 4 + length])
            offset += 4 + length
        if len(elements) != count:
            _check_count(spec, count, f"{count} element(s)", len(elements), f"{len(elements)} element(s)")
        data = np.empty(count, dtype=object)
        data[:] = elements
        return Tensor(spec.name, spec.datatype, shape, data.reshape(shape), dict(spec.parameters or {}))
    dtype = NUMERIC_DTYPES[spec.datatype]
    needed = count * dtype.itemsize
    if len(raw) != needed:  # the message only when it is needed: most requests send what they declare
        _check_count(spec, needed, f"{needed} bytes", len(raw), f"{len(raw)} bytes")
    values = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return Tensor(spec.name, spec.datatype, shape, values, dict(spec.parameters or {}))


def _check_count(spec: RequestInput, expected: int, needed: str, actual: int, sent: str) -> None:
    if actual != expected:
        raise BadRequest(
            MSG_V2_DATA_COUNT.format(name=spec.name, shape=list(spec.shape), expected=needed, actual=sent)
        )


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major elements of flat or nested JSON lists."""
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def decode_json(spec: RequestInput) -> Tensor:
    """A tensor from JSON `data`: numbers (null is NaN in a float tensor), booleans or strings."""
    _check_datatype(spec)
    if spec.data is None:
        raise BadRequest(MSG_V2_NO_DATA.format(name=spec.name))
    shape, count = _shape(spec)
    flat = _flatten(spec.data)
    _check_count(spec, count, f"{count} element(s)", len(flat), f"{len(flat)} element(s)")
    kinds = set(map(type, flat))
    datatype = spec.datatype

    def refuse(reason: str) -> BadRequest:
        return BadRequest(MSG_V2_DATA_TYPE.format(name=spec.name, datatype=datatype, reason=reason))

    if datatype == "BYTES":
        if not kinds <= {str, type(None)}:
            raise refuse("send text, or null for a missing value")
        data = np.empty(count, dtype=object)
        data[:] = flat
        return Tensor(spec.name, datatype, shape, data.reshape(shape), dict(spec.parameters or {}))
    dtype = NUMERIC_DTYPES[datatype]
    if datatype == "BOOL":
        allowed: set[type] = {bool}
    elif datatype in FLOAT_TYPES:
        allowed = {int, float, type(None)}
    else:
        allowed = {int}
    if not kinds <= allowed:
        names = sorted(t.__name__ for t in kinds - allowed)
        raise refuse(f"found {', '.join('null' if n == 'NoneType' else n for n in names)}")
    if type(None) in kinds:
        flat = [math.nan if v is None else v for v in flat]
    try:
        values = np.array(flat, dtype=dtype)
    except (OverflowError, ValueError) as exc:
        raise refuse(str(exc)) from None
    return Tensor(spec.name, datatype, shape, values.reshape(shape), dict(spec.parameters or {}))


def _encode_bytes(values: np.ndarray) -> bytes:
    parts = []
    for value in values.reshape(-1).tolist():
        raw = value.encode() if isinstance(value, str) else bytes(value)
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def output_bytes(output: OutputTensor) -> bytes:
    """An output's elements as binary tensor data (the binary extension's, and gRPC's raw contents)."""
    if output.datatype == "BYTES":
        return _encode_bytes(output.data)
    return np.ascontiguousarray(output.data, dtype=NUMERIC_DTYPES[output.datatype]).tobytes()


def decode_elements(spec: RequestInput, values: Sequence[Any]) -> Tensor:
    """A tensor from elements already typed by the sender (gRPC's `contents`): numbers of the datatype's
    kind, or `bytes` for BYTES."""
    _check_datatype(spec)
    shape, count = _shape(spec)
    _check_count(spec, count, f"{count} element(s)", len(values), f"{len(values)} element(s)")
    if spec.datatype == "BYTES":
        data = np.empty(count, dtype=object)
        data[:] = list(values)
    else:
        try:
            data = np.array(values, dtype=NUMERIC_DTYPES[spec.datatype])
        except (OverflowError, ValueError) as exc:
            reason = str(exc)
            raise BadRequest(
                MSG_V2_DATA_TYPE.format(name=spec.name, datatype=spec.datatype, reason=reason)
            ) from None
    return Tensor(spec.name, spec.datatype, shape, data.reshape(shape), dict(spec.parameters or {}))


def encode_response(
    header: dict[str, Any], outputs: list[tuple[OutputTensor, bool]]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when any output goes as binary (else None)."""
    described, binary_parts = [], []
    for output, as_binary in outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.data.shape),
        }
        parameters = dict(output.parameters)
        if as_binary:
            raw = output_bytes(output)
            parameters["binary_data_size"] = len(raw)
            binary_parts.append(raw)
        else:
            data = output.data.reshape(-1).tolist()
            # NaN (an unknown id's rating) goes as JSON null, as a request's null is NaN.
            if output.datatype.startswith("FP") and np.isnan(output.data).any():
                data = [None if v != v else v for v in data]
            entry["data"] = data
        if parameters:
            entry["parameters"] = parameters
        described.append(entry)
    text = json.dumps({**header, "outputs": described}, separators=(",", ":")).encode()
    if not binary_parts:
        return text, None
    return text + b"".join(binary_parts), len(text)

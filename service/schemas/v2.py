"""Bodies of the Open Inference Protocol (KServe V2 / Triton HTTP) on /v2, as the protocol names them.

Parameters are free-form objects (the protocol's `$parameters`); the binary tensor data extension adds
`binary_data_size` to inputs and outputs, `binary_data` to requested outputs and `binary_data_output`
to the request.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

TensorData = list[Any]


class RequestInput(BaseModel):
    name: str
    shape: list[int] = Field(max_length=8)
    datatype: str
    parameters: dict[str, Any] | None = None
    data: TensorData | None = Field(
        default=None, description="row-major elements, flat or nested; absent when sent as binary"
    )


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: TensorData | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class InferenceError(BaseModel):
    """Every /v2 refusal: the protocol's own error body."""

    error: str

"""The gRPC front door's proto (service/api/v2/proto) is Triton's on the wire: every message, field
(name, number, type, repeated, message type) and RPC of ours is the same in tritonclient.grpc's own
descriptors, so its client works unchanged; and the generated modules live in their own descriptor pool,
so a process may hold both."""

from __future__ import annotations

from typing import Any

import pytest

from service.api.v2.proto import grpc_predict_v2_pb2 as ours

triton = pytest.importorskip("tritonclient.grpc.service_pb2")

RPCS = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]


def _field(field: Any) -> tuple[Any, ...]:
    message = field.message_type.full_name if field.message_type is not None else None
    return (field.name, field.number, field.type, field.is_repeated, message)


def _messages(descriptor: Any) -> dict[str, Any]:
    found = {}
    pending = list(descriptor.message_types_by_name.values())
    while pending:
        message = pending.pop()
        found[message.full_name] = message
        pending.extend(message.nested_types)
    return found


def test_every_message_and_field_is_tritons() -> None:
    mine, theirs = _messages(ours.DESCRIPTOR), _messages(triton.DESCRIPTOR)
    assert ours.DESCRIPTOR.package == "inference"
    assert len(mine) >= 20  # the six RPCs' messages, their nested tensors, parameters and contents
    for name, message in mine.items():
        assert name in theirs, name
        assert sorted(map(_field, message.fields)) == sorted(map(_field, theirs[name].fields)), name
        assert message.GetOptions().map_entry == theirs[name].GetOptions().map_entry, name


def test_the_service_is_tritons_subset() -> None:
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    theirs = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert [m.name for m in service.methods] == RPCS
    for method in service.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name,
            other.output_type.full_name,
        )
        assert not (method.client_streaming or method.server_streaming)


def test_both_are_importable_in_one_process_and_read_each_others_bytes() -> None:
    sent = ours.ModelInferResponse(model_name="m", raw_output_contents=[b"\x01\x02"])
    sent.parameters["classes"].string_param = '["a","b"]'
    read = triton.ModelInferResponse.FromString(sent.SerializeToString())
    assert read.model_name == "m" and read.raw_output_contents == [b"\x01\x02"]
    assert read.parameters["classes"].string_param == '["a","b"]'
    assert ours.DESCRIPTOR.pool is not triton.DESCRIPTOR.pool

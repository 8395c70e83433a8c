"""The /v2 tensor codec alone (no learner): JSON and binary tensors in, outputs out, every malformed body a
400 that says what is wrong."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from service.api.v2.codec import OutputTensor, Tensor, encode_response, read_request
from service.errors import BadRequest


def _body(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _binary(inputs: list[tuple[dict[str, Any], bytes]]) -> tuple[bytes, str]:
    described = [{**spec, "parameters": {"binary_data_size": len(raw)}} for spec, raw in inputs]
    header = json.dumps({"inputs": described}).encode()
    return header + b"".join(raw for _, raw in inputs), str(len(header))


def _bytes_elements(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def _one(body: bytes, header: str | None = None) -> Tensor:
    _, [tensor] = read_request(body, header)
    return tensor


def test_json_numbers_flat_or_nested_take_the_declared_dtype_and_shape() -> None:
    flat = _one(_body([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2.5, 3, 4]}]))
    nested = _one(_body([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [3, 4]]}]))
    assert flat.data.dtype == np.float32 and flat.data.shape == (2, 2)
    np.testing.assert_array_equal(flat.data, nested.data)


def test_json_null_is_nan_in_floats_and_none_in_bytes() -> None:
    floats = _one(_body([{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, None]}]))
    assert np.isnan(floats.data[1])
    text = _one(_body([{"name": "c", "shape": [2], "datatype": "BYTES", "data": ["a", None]}]))
    assert text.data.tolist() == ["a", None]


def test_binary_numbers_and_bytes_in_input_order() -> None:
    pixels = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    body, header = _binary(
        [
            ({"name": "p", "shape": [1, 2, 2, 3], "datatype": "UINT8"}, pixels.tobytes()),
            ({"name": "b", "shape": [2], "datatype": "BYTES"}, _bytes_elements(b"ab", b"")),
            ({"name": "f", "shape": [2], "datatype": "FP64"}, np.array([1.5, -2], "<f8").tobytes()),
        ]
    )
    _, [p, b, f] = read_request(body, header)
    np.testing.assert_array_equal(p.data, pixels)
    assert b.data.tolist() == [b"ab", b""]
    assert f.data.tolist() == [1.5, -2.0]


@pytest.mark.parametrize(
    ("body", "header", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (_body([]), None, "malformed"),
        (b'{"inputs": [{"name": "x"}]}', None, "malformed"),
        (
            _body([{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]),
            None,
            "not a protocol datatype",
        ),
        (_body([{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]), None, "needs 3 element"),
        (_body([{"name": "x", "shape": [1], "datatype": "INT32", "data": [1.5]}]), None, "found float"),
        (_body([{"name": "x", "shape": [1], "datatype": "INT32", "data": [None]}]), None, "found null"),
        (_body([{"name": "x", "shape": [1], "datatype": "UINT8", "data": [300]}]), None, "UINT8"),
        (_body([{"name": "x", "shape": [1], "datatype": "FP32", "data": ["1"]}]), None, "found str"),
        (_body([{"name": "x", "shape": [1], "datatype": "BYTES", "data": [1]}]), None, "send text"),
        (_body([{"name": "x", "shape": [1], "datatype": "FP32"}]), None, "neither `data`"),
        (_body([{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]), None, "negative"),
        (
            _body([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2),
            None,
            "more than once",
        ),
        (
            _body([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]),
            "9999",
            "Header-Content-Length",
        ),
        (
            _body([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]),
            "-3",
            "Header-Content-Length",
        ),
        (
            _body([{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]),
            None,
            "runs past the end",
        ),
    ],
)
def test_malformed_requests_are_bad_requests(body: bytes, header: str | None, fragment: str) -> None:
    with pytest.raises(BadRequest, match=None) as caught:
        read_request(body, header)
    assert caught.value.status == 400
    assert fragment in caught.value.detail


def test_binary_size_must_match_the_shape_and_leave_nothing_over() -> None:
    body, header = _binary([({"name": "f", "shape": [2], "datatype": "FP32"}, b"\0" * 12)])
    with pytest.raises(BadRequest, match="needs 8 bytes, but 12 bytes"):
        read_request(body, header)
    body, header = _binary([({"name": "f", "shape": [1], "datatype": "FP32"}, b"\0" * 4)])
    with pytest.raises(BadRequest, match="belong to no input"):
        read_request(body + b"xx", header)
    body, header = _binary(
        [({"name": "b", "shape": [1], "datatype": "BYTES"}, struct.pack("<I", 10) + b"abc")]
    )
    with pytest.raises(BadRequest, match="4-byte length runs past"):
        read_request(body, header)


def test_outputs_as_json_or_binary() -> None:
    labels = np.array(["cat", "dog"], dtype=object)
    probs = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    outputs = [
        OutputTensor("label", "BYTES", labels),
        OutputTensor("p", "FP32", probs, {"classes": ["a", "b"]}),
    ]
    text, length = encode_response({"model_name": "m"}, [(outputs[0], False), (outputs[1], False)])
    assert length is None
    body = json.loads(text)
    assert body["outputs"][0] == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}
    assert body["outputs"][1]["data"] == [0.25, 0.75, 0.5, 0.5]
    assert body["outputs"][1]["parameters"] == {"classes": ["a", "b"]}

    raw, length = encode_response({"model_name": "m"}, [(outputs[0], True), (outputs[1], True)])
    assert length is not None
    header = json.loads(raw[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    tail = raw[length:]
    assert tail[: sizes[0]] == _bytes_elements(b"cat", b"dog")
    np.testing.assert_array_equal(np.frombuffer(tail[sizes[0] :], "<f4").reshape(2, 2), probs)
    assert "data" not in header["outputs"][0]

"""The Open Inference Protocol over gRPC: `tritonclient.grpc` against a real server (uvicorn in a thread,
gRPC started by the app's lifespan in the same event loop) gets, for every kind and task the store
serves, the same output tensors as REST /v2 does; refusals are gRPC status codes carrying the REST
messages; keys, the rate limit and the metrics are the HTTP server's own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from service.api.app import create_app
from service.errors import (
    MSG_CLI_RAY_GRPC,
    MSG_GRPC_BIND,
    MSG_PREDICT_KEY_MISSING,
    MSG_PREDICT_KEY_WRONG,
)
from service.monitoring.payload import read_log
from service.settings import Settings
from tests.helpers import (
    ROOT,
    TABULAR,
    VISION,
    adult_rows,
    client_for,
    clone_store,
    free_port,
    image_bytes,
    make_settings,
    served,
)
from tests.tiny import TAB_MULTI, TASK_MODELS, VIS_MULTI
from tests.tiny_collab import COLLAB_DOT, COLLAB_MODELS, COLLAB_NN
from tests.tiny_segmentation import SEGMENTATION

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

MAX_ROWS, MAX_FILES, MAX_MB = 50, 4, 1.0
CORRUPT = "corrupt"
TEXT_MODELS = ["reviews-sentiment", "reviews-tags"]  # tests/tiny_text.py
SERVED = [TABULAR, VISION, *TASK_MODELS, *TEXT_MODELS, *COLLAB_MODELS, SEGMENTATION]
# Collab ids the tiny learners know (tests/tiny_collab.py): (datatype, values) per input.
COLLAB_IDS = {
    COLLAB_DOT: {
        "user": ("INT64", np.array([0, 1, 999], dtype=np.int64)),
        "item": ("BYTES", ["m0", "m1", "m2"]),
    },
    COLLAB_NN: {
        "user": ("BYTES", ["u0", "u1", "nobody"]),
        "item": ("INT64", np.array([0, 1, 2], dtype=np.int64)),
    },
}


@pytest.fixture(scope="module")
def every_store(
    tmp_path_factory: pytest.TempPathFactory,
    trained_store: Path,
    task_store: Path,
    text_store: Path,
    collab_store: Path,
    seg_store: Path,
) -> Path:
    """Every tiny learner of every kind and task in one store (hard links), and one that fails to load."""
    store = tmp_path_factory.mktemp("grpc-store")
    for source in (trained_store, task_store, text_store, collab_store, seg_store):
        clone_store(source, store)
    (store / CORRUPT).mkdir()
    (store / CORRUPT / "model.pkl").write_bytes(b"this is not a pickle")
    return store


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grpc-log")


@pytest.fixture(scope="module")
def server(every_store: Path, log_dir: Path) -> Iterator[tuple[str, str]]:
    """A real uvicorn with gRPC on another free port, every prediction logged (written at once); yields
    (HTTP host:port, gRPC host:port)."""
    settings = make_settings(
        every_store,
        grpc_port=free_port(),
        max_rows=MAX_ROWS,
        max_files=MAX_FILES,
        max_upload_mb=MAX_MB,
        log_dir=log_dir,
        log_flush_s=0.1,
    )
    app = create_app(settings)
    with served(app) as address:
        yield address, f"127.0.0.1:{app.state.grpc_port}"


@pytest.fixture(scope="module")
def triton(server: tuple[str, str]) -> Any:
    return grpcclient.InferenceServerClient(url=server[1])


@pytest.fixture(scope="module")
def rest(server: tuple[str, str]) -> Any:
    return httpclient.InferenceServerClient(url=server[0])


@pytest.fixture(scope="module")
def http(server: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{server[0]}", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server: tuple[str, str]) -> Iterator[Any]:
    """The service's stub over a plain channel, for messages tritonclient would not send."""
    with grpc.insecure_channel(server[1]) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


# -- requests built from REST metadata, sent through both clients --------------------------------------
def _arrays(meta: dict[str, Any], name: str, frame: pd.DataFrame) -> dict[str, tuple[str, Any]]:
    """(datatype, elements) per input of model `name`, from its metadata alone (plus known collab ids)."""
    kind = meta["parameters"]["kind"]
    if kind == "collab":
        return COLLAB_IDS[name]
    if kind == "text":
        return {"text": ("BYTES", ["a wonderful, moving film", "dull and far too long"])}
    if kind == "vision":
        return {"image": ("BYTES", [image_bytes(seed=1), image_bytes(seed=2)])}
    rows = adult_rows(frame, 3)
    rows[1] = {**rows[1], "workclass": "Astronaut"}  # an unseen category: the same warning both ways
    arrays: dict[str, tuple[str, Any]] = {}
    for spec in meta["inputs"]:
        values = [row[spec["name"]] for row in rows]
        if spec["datatype"] == "BYTES":
            arrays[spec["name"]] = ("BYTES", [str(v) for v in values])
        else:
            arrays[spec["name"]] = ("FP64", np.array(values, dtype=np.float64))
    return arrays


def _numpy(datatype: str, values: Any) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([v if isinstance(v, bytes) else str(v).encode() for v in values], dtype=np.object_)
    return np.asarray(values)


def _inputs(module: Any, arrays: dict[str, tuple[str, Any]]) -> list[Any]:
    inputs = []
    for name, (datatype, values) in arrays.items():
        array = _numpy(datatype, values)
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _assert_same_tensors(over_grpc: Any, over_rest: Any) -> None:
    grpc_outputs = over_grpc.get_response(as_json=True)["outputs"]
    rest_outputs = over_rest.get_response()["outputs"]
    assert [(o["name"], o["datatype"]) for o in grpc_outputs] == [
        (o["name"], o["datatype"]) for o in rest_outputs
    ]
    for output in rest_outputs:
        name = output["name"]
        got, expected = over_grpc.as_numpy(name), over_rest.as_numpy(name)
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        if got.dtype.kind == "f":
            np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)
        # Parameters (class names, targets, threshold): scalars as theirs, lists and objects as JSON text.
        parameters = over_grpc.get_output(name).parameters
        for key, value in (output.get("parameters") or {}).items():
            if key == "binary_data_size" or value is None:
                continue
            sent = parameters[key]
            choice = sent.WhichOneof("parameter_choice")
            assert (
                json.loads(sent.string_param)
                if choice == "string_param" and not isinstance(value, str)
                else getattr(sent, choice)
            ) == value, (name, key)


def _logged(log_dir: Path, name: str, ids: set[str]) -> dict[str, str]:
    """Protocol by id of the log's rows with these ids, once the writer has written them all."""
    deadline = time.monotonic() + 30
    while True:
        table = read_log(log_dir, model=name)
        found = (
            dict(zip(table.column("id").to_pylist(), table.column("protocol").to_pylist(), strict=True))
            if table.num_rows
            else {}
        )
        if ids <= found.keys() or time.monotonic() > deadline:
            return {i: p for i, p in found.items() if i in ids}
        time.sleep(0.1)


@pytest.mark.parametrize("name", SERVED)
def test_every_kind_and_task_answers_the_rest_tensors(
    name: str, triton: Any, rest: Any, http: httpx.Client, adult_frame: pd.DataFrame, log_dir: Path
) -> None:
    meta = http.get(f"/v2/models/{name}").json()
    arrays = _arrays(meta, name, adult_frame)
    over_grpc = triton.infer(name, _inputs(grpcclient, arrays), request_id="r-1")
    over_rest = rest.infer(name, _inputs(httpclient, arrays), request_id="r-1")
    _assert_same_tensors(over_grpc, over_rest)
    response = over_grpc.get_response()
    assert (response.model_name, response.id) == (name, "r-1")
    assert response.model_version == meta["versions"][0]
    # Warnings (the unseen category) travel as JSON text in the response's parameters.
    warnings = (over_rest.get_response().get("parameters") or {}).get("warnings")
    if warnings is not None:
        assert json.loads(response.parameters["warnings"].string_param) == warnings
    else:
        assert "warnings" not in response.parameters
    # The metadata's tensors are REST's, less their parameters (the proto's TensorMetadata has none).
    grpc_meta = triton.get_model_metadata(name, as_json=True)
    for side in ("inputs", "outputs"):
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in grpc_meta[side]] == [
            (t["name"], t["datatype"], t["shape"]) for t in meta[side]
        ]
    assert grpc_meta["platform"] == meta["platform"]
    # Both doors' items are in the payload log under the ids their answers gave, each door named.
    rest_ids = over_rest.get_response()["parameters"]["ids"]
    grpc_ids = json.loads(response.parameters["ids"].string_param)
    assert len(rest_ids) == len(grpc_ids) == len(next(iter(arrays.values()))[1])
    assert _logged(log_dir, name, {*rest_ids, *grpc_ids}) == {
        **dict.fromkeys(rest_ids, "v2"),
        **dict.fromkeys(grpc_ids, "grpc"),
    }


def test_request_parameters_and_output_selection_as_on_rest(
    triton: Any, rest: Any, http: httpx.Client, adult_frame: pd.DataFrame
) -> None:
    # top_k (an int64 parameter) and one output of two.
    arrays = {"image": ("BYTES", [image_bytes(seed=3)])}
    for selected in (["top_k"], ["label", "top_k"]):
        over_grpc = triton.infer(
            VISION,
            _inputs(grpcclient, arrays),
            parameters={"top_k": 2},
            outputs=[grpcclient.InferRequestedOutput(n) for n in selected],
        )
        over_rest = rest.infer(
            VISION,
            _inputs(httpclient, arrays),
            parameters={"top_k": 2},
            outputs=[httpclient.InferRequestedOutput(n) for n in selected],
        )
        _assert_same_tensors(over_grpc, over_rest)
        assert over_grpc.as_numpy("top_k").shape == (1, 2)
    # threshold (a double parameter) on multi-label models.
    for name in (TAB_MULTI, VIS_MULTI):
        meta = http.get(f"/v2/models/{name}").json()
        arrays = _arrays(meta, name, adult_frame)
        try:
            low = triton.infer(name, _inputs(grpcclient, arrays), parameters={"threshold": 0.01})
        except InferenceServerException as exc:
            # tritonclient before ~2.50 (what pip may resolve beside protobuf 7) sends no double parameter.
            if "is not supported" not in str(exc):
                raise
            pytest.skip(f"this tritonclient.grpc cannot send a double parameter: {exc}")
        assert low.as_numpy("predicted").all()
        _assert_same_tensors(
            low, rest.infer(name, _inputs(httpclient, arrays), parameters={"threshold": 0.01})
        )


def test_server_and_model_readiness(triton: Any, http: httpx.Client) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    metadata = triton.get_server_metadata(as_json=True)
    assert metadata["name"] == "fastai-serve" and "binary_tensor_data" in metadata["extensions"]
    version = http.get(f"/api/v1/models/{TABULAR}").json()["version"]
    assert all(triton.is_model_ready(name) for name in SERVED)
    assert triton.is_model_ready(TABULAR, model_version=version)
    assert not triton.is_model_ready(TABULAR, model_version="not-" + version)
    assert not triton.is_model_ready("nope")
    assert not triton.is_model_ready(CORRUPT)


def test_typed_contents_are_accepted_as_raw_ones(triton: Any, stub: Any, adult_frame: pd.DataFrame) -> None:
    """Elements in `contents` (fp64_contents, bytes_contents, int64 ...) answer as raw_input_contents do."""
    meta = triton.get_model_metadata(TABULAR, as_json=True)
    rows = adult_rows(adult_frame, 2)
    request = service_pb2.ModelInferRequest(model_name=TABULAR)
    raw_inputs = []
    for spec in meta["inputs"]:
        values = [row[spec["name"]] for row in rows]
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=[2])
        if spec["datatype"] == "BYTES":
            tensor.contents.bytes_contents.extend(str(v).encode() for v in values)
            raw_inputs.append(("BYTES", [str(v) for v in values]))
        else:
            tensor.contents.fp64_contents.extend(float(v) for v in values)
            raw_inputs.append(("FP64", np.array(values, dtype=np.float64)))
    typed = stub.ModelInfer(request)
    assert not any(o.HasField("contents") for o in typed.outputs)  # answers are raw
    arrays = dict(zip([s["name"] for s in meta["inputs"]], raw_inputs, strict=True))
    over_raw = triton.infer(TABULAR, _inputs(grpcclient, arrays))
    assert typed.raw_output_contents == over_raw.get_response().raw_output_contents
    # Whole-number ids as int64_contents.
    request = service_pb2.ModelInferRequest(model_name=COLLAB_DOT)
    user = request.inputs.add(name="user", datatype="INT64", shape=[2])
    user.contents.int64_contents.extend([0, 1])
    item = request.inputs.add(name="item", datatype="BYTES", shape=[2])
    item.contents.bytes_contents.extend([b"m0", b"m1"])
    typed = stub.ModelInfer(request)
    ratings = np.frombuffer(typed.raw_output_contents[0], dtype="<f4")
    collab = COLLAB_IDS[COLLAB_DOT]
    over_raw = triton.infer(
        COLLAB_DOT,
        _inputs(
            grpcclient, {"user": ("INT64", collab["user"][1][:2]), "item": ("BYTES", collab["item"][1][:2])}
        ),
    )
    np.testing.assert_array_equal(ratings, over_raw.as_numpy("rating"))


def test_uint8_pixels_raw_answer_as_the_encoded_image(triton: Any) -> None:
    from io import BytesIO

    from PIL import Image

    png = image_bytes(seed=4)
    pixels = np.asarray(Image.open(BytesIO(png)).convert("RGB"), dtype=np.uint8)[None]
    as_pixels = triton.infer(VISION, _inputs(grpcclient, {"image": ("UINT8", pixels)}))
    as_file = triton.infer(VISION, _inputs(grpcclient, {"image": ("BYTES", [png])}))
    np.testing.assert_allclose(
        as_pixels.as_numpy("probabilities"), as_file.as_numpy("probabilities"), atol=1e-6
    )


# -- refusals: gRPC codes with the REST messages --------------------------------------------------------
def _refused(call: Any, code: grpc.StatusCode, fragment: str = "") -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == f"StatusCode.{code.name}", caught.value
    message = str(caught.value.message())
    assert fragment in message and "Traceback" not in message
    return message


def _rest_error(http: httpx.Client, path: str, body: dict[str, Any], status: int) -> str:
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    return str(response.json()["error"])


def test_unknown_model_and_version_are_not_found(triton: Any, adult_frame: pd.DataFrame) -> None:
    arrays = {"image": ("BYTES", [image_bytes()])}
    _refused(
        lambda: triton.infer("nope", _inputs(grpcclient, arrays)),
        grpc.StatusCode.NOT_FOUND,
        "'nope' does not exist",
    )
    _refused(lambda: triton.get_model_metadata("nope"), grpc.StatusCode.NOT_FOUND, "'nope' does not exist")
    _refused(
        lambda: triton.infer(VISION, _inputs(grpcclient, arrays), model_version="zzz"),
        grpc.StatusCode.NOT_FOUND,
        "no version 'zzz'",
    )


def test_bad_tensors_are_invalid_argument_with_the_rest_message(
    triton: Any, stub: Any, http: httpx.Client
) -> None:
    # Text as FP32: the same message as REST /v2 gives for the same tensor.
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    expected = _rest_error(http, f"/v2/models/{TEXT_MODELS[0]}/infer", body, 400)
    arrays = {"text": ("FP32", np.array([1.0], dtype=np.float32))}
    got = _refused(
        lambda: triton.infer(TEXT_MODELS[0], _inputs(grpcclient, arrays)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert got == expected
    # Missing and unknown inputs, an unknown output.
    _refused(
        lambda: triton.infer(VISION, _inputs(grpcclient, {"picture": ("BYTES", [image_bytes()])})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "missing input(s) 'image'",
    )
    _refused(
        lambda: triton.infer(
            VISION,
            _inputs(grpcclient, {"image": ("BYTES", [image_bytes()])}),
            outputs=[grpcclient.InferRequestedOutput("mask")],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown output(s) 'mask'",
    )
    # Raw contents that do not fill the shape; raw and typed mixed; a datatype with no contents field.
    request = service_pb2.ModelInferRequest(model_name=VISION)
    request.inputs.add(name="image", datatype="UINT8", shape=[1, 4, 4, 3])
    request.raw_input_contents.append(b"\0" * 10)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 48 bytes, but 10 bytes were sent" in caught.value.details()
    request.inputs.add(name="other", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"x")
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert "raw_input_contents" in caught.value.details()
    request = service_pb2.ModelInferRequest(model_name=VISION)
    request.inputs.add(name="image", datatype="FP16", shape=[1])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "send it raw" in caught.value.details()
    # An image that is not one: the vision path's own message.
    _refused(
        lambda: triton.infer(VISION, _inputs(grpcclient, {"image": ("BYTES", [b"not an image"])})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "image[0]",
    )
    assert triton.is_server_ready()


def test_too_large_is_resource_exhausted(triton: Any, http: httpx.Client, adult_frame: pd.DataFrame) -> None:
    meta = http.get(f"/v2/models/{TABULAR}").json()
    rows = adult_rows(adult_frame, MAX_ROWS + 1)
    arrays = {
        spec["name"]: (
            spec["datatype"],
            [str(r[spec["name"]]) for r in rows]
            if spec["datatype"] == "BYTES"
            else np.array([r[spec["name"]] for r in rows], dtype=np.float64),
        )
        for spec in meta["inputs"]
    }
    _refused(
        lambda: triton.infer(TABULAR, _inputs(grpcclient, arrays)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"{MAX_ROWS + 1} rows sent; at most {MAX_ROWS}",
    )
    images = {"image": ("BYTES", [image_bytes(seed=i) for i in range(MAX_FILES + 1)])}
    _refused(
        lambda: triton.infer(VISION, _inputs(grpcclient, images)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"{MAX_FILES + 1} files sent",
    )
    # Over the upload limit: grpc refuses the message before it is parsed.
    big = {"image": ("BYTES", [b"\0" * int(MAX_MB * 1024 * 1024 + 1)])}
    _refused(lambda: triton.infer(VISION, _inputs(grpcclient, big)), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert triton.is_server_ready()


def test_a_model_that_failed_to_load_is_unavailable(triton: Any, http: httpx.Client) -> None:
    expected = _rest_error(
        http,
        f"/v2/models/{CORRUPT}/infer",
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
        503,
    )
    arrays = {"x": ("FP32", np.array([1.0], dtype=np.float32))}
    got = _refused(
        lambda: triton.infer(CORRUPT, _inputs(grpcclient, arrays)),
        grpc.StatusCode.UNAVAILABLE,
        "failed to load",
    )
    assert got == expected
    _refused(lambda: triton.get_model_metadata(CORRUPT), grpc.StatusCode.UNAVAILABLE, "failed to load")


def test_grpc_calls_are_counted_with_their_protocol(triton: Any, http: httpx.Client) -> None:
    triton.infer(VISION, _inputs(grpcclient, {"image": ("BYTES", [image_bytes()])}))
    _refused(lambda: triton.get_model_metadata("nope"), grpc.StatusCode.NOT_FOUND)
    text = http.get("/metrics").text
    route = "/inference.GRPCInferenceService/ModelInfer"
    assert (
        f'fastai_serve_requests_total{{model="{VISION}",protocol="grpc",route="{route}",status="OK"}}' in text
    )
    route = "/inference.GRPCInferenceService/ModelMetadata"
    assert (
        f'fastai_serve_requests_total{{model="nope",protocol="grpc",route="{route}",status="NOT_FOUND"}}'
        in text
    )
    # The batcher counted the gRPC request's forward pass like any other.
    assert f'fastai_serve_batch_size_count{{model="{VISION}"}}' in text


def test_readme_grpc_snippet_runs(
    server: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from Triton/KServe clients", 1)[1]
    [snippet] = [b.split("```", 1)[0] for b in section.split("```python\n")[1:] if "tritonclient.grpc" in b]
    snippet = snippet.replace("localhost:8001", server[1])
    snippet = snippet.replace('"adult-income"', repr(TABULAR)).replace('"cifar10"', repr(VISION))
    monkeypatch.chdir(ROOT)
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "True ['binary_tensor_data']" in printed


# -- keys, the rate limit, the port ---------------------------------------------------------------------
def test_keys_and_the_rate_limit_are_the_http_servers(trained_store: Path, tmp_path: Path) -> None:
    store = clone_store(trained_store, tmp_path / "store", [VISION])
    settings = make_settings(
        store, grpc_port=free_port(), predict_api_keys=["k-one", "k-two"], rate_limit="3/minute"
    )
    app = create_app(settings)
    image = {"image": ("BYTES", [image_bytes()])}
    with served(app) as address:
        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{app.state.grpc_port}")
        assert client.is_server_live() and client.is_server_ready()  # open, as /v2/health is
        _refused(
            lambda: client.infer(VISION, _inputs(grpcclient, image)),
            grpc.StatusCode.UNAUTHENTICATED,
            MSG_PREDICT_KEY_MISSING,
        )
        _refused(
            lambda: client.get_model_metadata(VISION, headers={"x-api-key": "nope"}),
            grpc.StatusCode.UNAUTHENTICATED,
            MSG_PREDICT_KEY_WRONG,
        )
        # One budget per key across both doors: HTTP takes one of three, gRPC two, the fourth is refused.
        with httpx.Client(base_url=f"http://{address}") as http:
            assert http.get(f"/v2/models/{VISION}/ready", headers={"x-api-key": "k-one"}).status_code == 200
        assert client.infer(VISION, _inputs(grpcclient, image), headers={"x-api-key": "k-one"}).as_numpy(
            "label"
        ).shape == (1,)
        assert client.is_model_ready(VISION, headers={"authorization": "Bearer k-one"})
        _refused(
            lambda: client.is_model_ready(VISION, headers={"x-api-key": "k-one"}),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many requests",
        )
        assert client.is_model_ready(VISION, headers={"authorization": "Bearer k-two"})  # another budget


async def test_port_0_serves_no_grpc(trained_store: Path) -> None:
    assert Settings.model_fields["grpc_port"].default == 8001  # as Triton; the tests' environment sets 0
    async for client in client_for(trained_store, grpc_port=0):
        app: Any = client._transport.app  # type: ignore[attr-defined]
        assert app.state.grpc_port is None


async def test_a_port_in_use_stops_the_start_up_saying_so(trained_store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(make_settings(trained_store, host="127.0.0.1", grpc_port=port))
        with pytest.raises(RuntimeError) as caught:
            async with app.router.lifespan_context(app):
                pass
        assert str(caught.value) == MSG_GRPC_BIND.format(address=f"127.0.0.1:{port}")


# -- the command line ---------------------------------------------------------------------------------
def test_grpc_port_with_ray_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main
    from service.settings import get_settings

    monkeypatch.setenv("FASTAI_SERVE_GRPC_PORT", "0")  # restored after the CLI has set it
    monkeypatch.setenv("FASTAI_SERVE_RAY_FRONT", "proxy")  # the local front serves gRPC
    try:
        assert main(["serve", "--ray", "auto", "--grpc-port", "8001"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err == f"fastai-serve: error: {MSG_CLI_RAY_GRPC}"


def test_serve_with_several_workers_serves_grpc_on_one_port(trained_store: Path, tmp_path: Path) -> None:
    """`fastai-serve serve --workers 2 --grpc-port P`: every worker listens on P (the kernel spreads the
    connections), each answers through its own batcher; the port reaches the app factory from the flag."""
    port, grpc_port = free_port(), free_port()
    store = clone_store(trained_store, tmp_path / "store", [VISION])
    env = {**os.environ, "FASTAI_SERVE_MODEL_STORE": str(store), "FASTAI_SERVE_DEVICE": "cpu"}
    env["FASTAI_SERVE_LOG_LEVEL"] = "warning"
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [*cmd, "--workers", "2", "--grpc-port", str(grpc_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "not ready in time"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        image = {"image": ("BYTES", [image_bytes()])}
        labels = set()
        for _ in range(8):  # a new channel (connection) each time
            client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
            labels.add(str(client.infer(VISION, _inputs(grpcclient, image)).as_numpy("label")[0]))
            client.close()
        assert len(labels) == 1
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

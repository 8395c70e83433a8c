"""The Open Inference Protocol on /v2: tritonclient.http against a real uvicorn gets the same predictions as
/api/v1 (labels equal, probabilities within 1e-6); every refusal is `{"error"}` with the protocol's status,
and the server keeps serving after each."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from service.api.app import create_app
from service.api.v2.codec import HEADER_LENGTH
from service.api.v2.kinds import ARROW_MIN_ROWS
from service.errors import MSG_REQUEST_TIMEOUT
from tests.helpers import (
    ROOT,
    TABULAR,
    VISION,
    adult_rows,
    client_for,
    clone_store,
    image_bytes,
    make_settings,
    served,
)

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MAX_ROWS, MAX_FILES, MAX_MB = 50, 4, 1.0


@pytest.fixture(scope="module")
def server(trained_store: Path) -> Iterator[str]:
    """A real uvicorn on loopback over the tiny store; yields host:port."""
    app = create_app(
        make_settings(trained_store, max_rows=MAX_ROWS, max_files=MAX_FILES, max_upload_mb=MAX_MB)
    )
    with served(app) as address:
        yield address


@pytest.fixture(scope="module")
def triton(server: str) -> Any:
    return httpclient.InferenceServerClient(url=server)


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{server}", timeout=60) as client:
        yield client


def _v1_tabular(http: httpx.Client, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = http.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def _v1_vision(http: httpx.Client, images: list[bytes], top_k: int = 3) -> list[dict[str, Any]]:
    files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(images)]
    response = http.post(f"/api/v1/vision/{VISION}/predict", files=files, params={"top_k": top_k})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def _assert_same(result: Any, v1: list[dict[str, Any]], classes: list[str]) -> None:
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    assert labels == [p["label"] for p in v1]
    expected = np.array([[p["probabilities"][c] for c in classes] for p in v1])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6, rtol=0)


def _tabular_inputs(triton: Any, rows: list[dict[str, Any]], *, binary: bool) -> list[Any]:
    """Inputs built from model metadata alone: its names and datatypes."""
    inputs = []
    for spec in triton.get_model_metadata(TABULAR)["inputs"]:
        name, datatype = spec["name"], spec["datatype"]
        values = [row[name] for row in rows]
        array = (
            np.array(values, dtype=np.float64)
            if datatype == "FP64"
            else np.array([str(v).encode() for v in values], dtype=np.object_)
        )
        tensor = httpclient.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _classes(triton: Any, model: str) -> list[str]:
    [probabilities] = [o for o in triton.get_model_metadata(model)["outputs"] if o["name"] == "probabilities"]
    classes: list[str] = probabilities["parameters"]["classes"]
    return classes


def _png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.uint8)


# -- tritonclient ----------------------------------------------------------------------------------------
def test_server_metadata_and_readiness(triton: Any, http: httpx.Client) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    version = http.get(f"/api/v1/models/{TABULAR}").json()["version"]
    assert triton.is_model_ready(TABULAR) and triton.is_model_ready(VISION)
    assert triton.is_model_ready(TABULAR, model_version=version)
    assert not triton.is_model_ready(TABULAR, model_version="not-" + version)
    assert not triton.is_model_ready("nope")


def test_tabular_metadata_describes_every_column(triton: Any, http: httpx.Client) -> None:
    detail = http.get(f"/api/v1/models/{TABULAR}").json()
    meta = triton.get_model_metadata(TABULAR)
    assert meta["name"] == TABULAR and meta["versions"] == [detail["version"]]
    columns = {c["name"]: c for c in detail["input_schema"]["columns"]}
    assert [i["name"] for i in meta["inputs"]] == list(columns)
    for tensor in meta["inputs"]:
        column = columns[tensor["name"]]
        assert tensor["shape"] == [-1]
        if column["type"] == "categorical":
            assert tensor["datatype"] == "BYTES"
            assert tensor["parameters"]["categories"] == column["categories"]
        else:
            assert tensor["datatype"] == "FP64" and tensor["parameters"]["nullable"] == column["nullable"]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["probabilities"]["shape"] == [-1, len(detail["classes"])]
    assert outputs["probabilities"]["parameters"]["classes"] == detail["classes"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tabular_infer_equals_v1(
    triton: Any, http: httpx.Client, adult_frame: pd.DataFrame, binary: bool
) -> None:
    rows = adult_rows(adult_frame, 7)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    result = triton.infer(
        TABULAR, _tabular_inputs(triton, rows, binary=binary), outputs=outputs, request_id="r-1"
    )
    _assert_same(result, _v1_tabular(http, rows), _classes(triton, TABULAR))
    assert result.get_response()["id"] == "r-1"


def test_tabular_missing_values_and_unknown_categories_warn_as_v1(
    triton: Any, http: httpx.Client, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 3)
    rows[0]["age"] = None  # the learner fills it (its training data had missing ages)
    rows[1]["workclass"] = "Martian"
    v1 = _v1_tabular(http, rows)
    inputs = _tabular_inputs(
        triton, [{**r, "age": np.nan if r["age"] is None else r["age"]} for r in rows], binary=True
    )
    result = triton.infer(TABULAR, inputs)  # no outputs named: all of them, as binary data
    _assert_same(result, v1, _classes(triton, TABULAR))
    assert result.get_response()["parameters"]["warnings"] == [p["warnings"] for p in v1]
    assert v1[0]["warnings"] and v1[1]["warnings"]
    # The same null as JSON.
    body = {
        "inputs": [
            {"name": i.name(), "shape": [3], "datatype": i.datatype(), "data": [r[i.name()] for r in rows]}
            for i in _tabular_inputs(triton, rows, binary=False)
        ]
    }
    response = http.post(f"/v2/models/{TABULAR}/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["parameters"]["warnings"] == [p["warnings"] for p in v1]


@pytest.mark.parametrize("n", [ARROW_MIN_ROWS - 1, ARROW_MIN_ROWS, MAX_ROWS])
def test_many_rows_take_the_columnar_path_with_the_same_answers_and_warnings_as_v1(
    triton: Any, http: httpx.Client, adult_frame: pd.DataFrame, n: int
) -> None:
    rows = adult_rows(adult_frame, n)
    rows[0]["age"] = None  # filled, with a warning
    rows[1]["workclass"] = "Martian"  # unknown, with a warning
    rows[2]["workclass"] = " private "  # another spelling: the category, with a warning
    v1 = _v1_tabular(http, rows)
    inputs = _tabular_inputs(
        triton, [{**r, "age": np.nan if r["age"] is None else r["age"]} for r in rows], binary=True
    )
    result = triton.infer(TABULAR, inputs)
    _assert_same(result, v1, _classes(triton, TABULAR))
    assert result.get_response()["parameters"]["warnings"] == [p["warnings"] for p in v1]
    assert all(v1[i]["warnings"] for i in range(3))


def test_many_rows_with_bytes_that_are_not_utf8_are_refused_naming_tensor_and_index(
    triton: Any, http: httpx.Client, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, ARROW_MIN_ROWS + 1)
    specs = triton.get_model_metadata(TABULAR)["inputs"]
    column = next(spec["name"] for spec in specs if spec["datatype"] == "BYTES")
    inputs, payload = [], b""
    for spec in specs:
        name, values = spec["name"], [row[spec["name"]] for row in rows]
        if spec["datatype"] == "FP64":
            data = np.array(values, dtype="<f8").tobytes()
        else:
            raw = [str(v).encode() for v in values]
            if name == column:
                raw[-1] = b"\xff\xfe"
            data = b"".join(len(v).to_bytes(4, "little") + v for v in raw)
        inputs.append({**spec, "shape": [len(rows)], "parameters": {"binary_data_size": len(data)}})
        payload += data
    header = json.dumps({"inputs": inputs}).encode()
    response = http.post(
        f"/v2/models/{TABULAR}/infer",
        content=header + payload,
        headers={"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
    )
    detail = _error(response, 400)
    assert column in detail and str(len(rows) - 1) in detail


def test_vision_metadata(triton: Any, http: httpx.Client) -> None:
    meta = triton.get_model_metadata(VISION)
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [("image", "BYTES", [-1])]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities", "top_k"}
    assert _classes(triton, VISION) == http.get(f"/api/v1/models/{VISION}").json()["classes"]


def test_vision_encoded_images_as_binary_equal_v1(triton: Any, http: httpx.Client) -> None:
    images = [image_bytes(seed=s) for s in range(3)]
    tensor = httpclient.InferInput("image", [3], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    result = triton.infer(VISION, [tensor], parameters={"top_k": 2})
    v1 = _v1_vision(http, images, top_k=2)
    _assert_same(result, v1, _classes(triton, VISION))
    top = result.as_numpy("top_k")
    assert top.shape == (3, 2)
    assert [[e.decode().split(":", 2)[2] for e in row] for row in top] == [
        [t["label"] for t in p["top_k"]] for p in v1
    ]


def test_vision_uint8_pixels_equal_v1(triton: Any, http: httpx.Client) -> None:
    images = [image_bytes(size=(40, 30), seed=s) for s in range(2)]
    pixels = np.stack([_png_pixels(png) for png in images])
    for binary in (True, False):
        tensor = httpclient.InferInput("image", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        result = triton.infer(VISION, [tensor])
        _assert_same(result, _v1_vision(http, images), _classes(triton, VISION))


def test_output_selection(triton: Any, http: httpx.Client, adult_frame: pd.DataFrame) -> None:
    rows = adult_rows(adult_frame, 2)
    inputs = _tabular_inputs(triton, rows, binary=True)
    only = triton.infer(TABULAR, inputs, outputs=[httpclient.InferRequestedOutput("probabilities")])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["probabilities"]
    assert only.as_numpy("label") is None and only.as_numpy("probabilities").shape == (2, 2)
    labels = triton.infer(
        TABULAR, inputs, outputs=[httpclient.InferRequestedOutput("label", binary_data=False)]
    )
    assert [o["name"] for o in labels.get_response()["outputs"]] == ["label"]
    assert labels.as_numpy("label").tolist() == [p["label"] for p in _v1_tabular(http, rows)]


def test_versioned_infer(triton: Any, http: httpx.Client) -> None:
    version = http.get(f"/api/v1/models/{VISION}").json()["version"]
    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image_bytes()], dtype=np.object_))
    assert triton.infer(VISION, [tensor], model_version=version).get_response()["model_version"] == version
    with pytest.raises(InferenceServerException, match="has no version"):
        triton.infer(VISION, [tensor], model_version="v999")


def test_json_images_are_base64(http: httpx.Client) -> None:
    text = base64.b64encode(image_bytes()).decode()
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [text]}], "id": "x"}
    response = http.post(f"/v2/models/{VISION}/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "x"
    assert response.json()["outputs"][0]["data"] == [_v1_vision(http, [image_bytes()])[0]["label"]]


# -- refusals --------------------------------------------------------------------------------------------
def _tabular_body(rows: list[dict[str, Any]], drop: str | None = None, **override: Any) -> dict[str, Any]:
    inputs = [
        {
            "name": name,
            "shape": [len(rows)],
            "datatype": "FP64" if isinstance(rows[0][name], float) else "BYTES",
            "data": [row[name] for row in rows],
        }
        for name in rows[0]
        if name != drop
    ]
    for tensor in inputs:
        tensor.update(override.get(tensor["name"], {}))
    return {"inputs": inputs}


def _binary(
    header: dict[str, Any], tail: bytes, *, length: int | None = None
) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + tail, {"Inference-Header-Content-Length": str(len(text) if length is None else length)}


def _error(response: httpx.Response, status: int, fragment: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and "Traceback" not in body["error"]
    assert fragment in body["error"]
    message: str = body["error"]
    return message


def _malformed(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, str]]:
    """Name -> (request kwargs for POST, a fragment of the error) of every malformed body."""
    one = rows[:1]
    png = image_bytes()
    tab, vis = f"/v2/models/{TABULAR}/infer", f"/v2/models/{VISION}/infer"
    image_header = {
        "inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}
        ]
    }
    past, past_headers = _binary(image_header, b"x" * 10, length=10_000)
    return {
        "bad datatype": (
            (tab, {"json": _tabular_body(one, age={"datatype": "BYTES", "data": ["39"]})}),
            "FP64",
        ),
        "unknown datatype": (
            (tab, {"json": _tabular_body(one, age={"datatype": "FP128"})}),
            "not a protocol",
        ),
        "shape/data mismatch": ((tab, {"json": _tabular_body(one, age={"shape": [2]})}), "needs 2 element"),
        "data of another type": ((tab, {"json": _tabular_body(one, age={"data": ["old"]})}), "found str"),
        "unequal N": (
            (tab, {"json": _tabular_body(rows[:2], age={"shape": [1], "data": [30.0]})}),
            "different numbers",
        ),
        "bad shape": ((tab, {"json": _tabular_body(one, age={"shape": [1, 1, 1]})}), "[N] or [N, 1]"),
        "missing column": ((tab, {"json": _tabular_body(one, drop="age")}), "missing input(s) 'age'"),
        "extra column": (
            (
                tab,
                {
                    "json": {
                        "inputs": [
                            *_tabular_body(one)["inputs"],
                            {"name": "x", "shape": [1], "datatype": "FP64", "data": [1]},
                        ]
                    }
                },
            ),
            "unknown input(s) 'x'",
        ),
        "null not fillable": ((tab, {"json": _tabular_body(one, fnlwgt={"data": [None]})}), "fnlwgt[0]"),
        "not JSON": ((tab, {"content": b"{nope"}), "not valid JSON"),
        "no inputs": ((tab, {"json": {"inputs": []}}), "malformed"),
        "unknown output": (
            (tab, {"json": {**_tabular_body(one), "outputs": [{"name": "logits"}]}}),
            "unknown output",
        ),
        "bytes not an image": (
            (
                vis,
                {
                    "json": {
                        "inputs": [
                            {
                                "name": "image",
                                "shape": [1],
                                "datatype": "BYTES",
                                "data": [base64.b64encode(b"hello").decode()],
                            }
                        ]
                    }
                },
            ),
            "not a supported image",
        ),
        "image not base64": (
            (
                vis,
                {"json": {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]}},
            ),
            "base64",
        ),
        "pixels of the wrong shape": (
            (
                vis,
                {
                    "json": {
                        "inputs": [
                            {"name": "image", "shape": [1, 2, 2], "datatype": "UINT8", "data": [0, 1, 2, 3]}
                        ]
                    }
                },
            ),
            "[N, H, W, 3]",
        ),
        "image as FP32": (
            (vis, {"json": {"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1]}]}}),
            "BYTES or UINT8",
        ),
        "binary header length past the body": (
            (vis, {"content": past, "headers": past_headers}),
            "Header-Content-Length",
        ),
        "binary data past the end": (
            (
                vis,
                {
                    "content": _binary(image_header, b"x" * 4)[0],
                    "headers": _binary(image_header, b"x" * 4)[1],
                },
            ),
            "runs past the end",
        ),
        "corrupt png": (
            (
                vis,
                {
                    "json": {
                        "inputs": [
                            {
                                "name": "image",
                                "shape": [1],
                                "datatype": "BYTES",
                                "data": [base64.b64encode(png[:60]).decode()],
                            }
                        ]
                    }
                },
            ),
            "cannot be decoded",
        ),
        "bad top_k": (
            (
                vis,
                {
                    "json": {
                        "inputs": [
                            {
                                "name": "image",
                                "shape": [1],
                                "datatype": "BYTES",
                                "data": [base64.b64encode(png).decode()],
                            }
                        ],
                        "parameters": {"top_k": 0},
                    }
                },
            ),
            "top_k",
        ),
    }


def test_every_malformed_body_is_400_and_the_server_keeps_serving(
    http: httpx.Client, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 2)
    for name, ((path, kwargs), fragment) in _malformed(rows).items():
        message = _error(http.post(path, **kwargs), 400, fragment)
        assert message, name
    assert http.post(f"/v2/models/{TABULAR}/infer", json=_tabular_body(rows)).status_code == 200


def test_404s(http: httpx.Client, adult_frame: pd.DataFrame) -> None:
    body = _tabular_body(adult_rows(adult_frame, 1))
    _error(http.get("/v2/models/nope"), 404, "'nope' does not exist")
    _error(http.get("/v2/models/nope/ready"), 404)
    _error(http.post("/v2/models/nope/infer", json=body), 404)
    _error(http.get(f"/v2/models/{TABULAR}/versions/zzz"), 404, "no version 'zzz'")
    _error(http.post(f"/v2/models/{TABULAR}/versions/zzz/infer", json=body), 404, "no version 'zzz'")
    _error(http.get("/v2/no/such/path"), 404)
    _error(http.get(f"/v2/models/{TABULAR}/infer"), 405)  # a known path with another method


def test_413s(http: httpx.Client, adult_frame: pd.DataFrame) -> None:
    rows = adult_rows(adult_frame, MAX_ROWS + 1)
    _error(http.post(f"/v2/models/{TABULAR}/infer", json=_tabular_body(rows)), 413, f"{MAX_ROWS + 1} rows")
    images = [base64.b64encode(image_bytes(seed=i)).decode() for i in range(MAX_FILES + 1)]
    body = {"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": images}]}
    _error(http.post(f"/v2/models/{VISION}/infer", json=body), 413, f"{MAX_FILES + 1} files")
    assert http.get("/v2/health/ready").status_code == 200


async def test_bodies_over_the_byte_limit_are_413(trained_store: Path) -> None:
    async for client in client_for(trained_store, max_upload_mb=MAX_MB):
        path = f"/v2/models/{VISION}/infer"
        big = b"\0" * int(MAX_MB * 1024 * 1024 + 1)
        _error(await client.post(path, content=big), 413, "MB limit")  # refused from Content-Length

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while it streams
            for _ in range(8):
                yield b"\0" * (256 * 1024)

        _error(await client.post(path, content=chunks()), 413, "MB limit")


async def test_pixels_over_the_limit_are_413(trained_store: Path) -> None:
    async for client in client_for(trained_store, max_image_pixels=64 * 64):
        pixels = np.zeros((1, 65, 64, 3), dtype=np.uint8)
        header = {"inputs": [{"name": "image", "shape": list(pixels.shape), "datatype": "UINT8"}]}
        body, headers = _binary(
            {"inputs": [{**header["inputs"][0], "parameters": {"binary_data_size": pixels.nbytes}}]},
            pixels.tobytes(),
        )
        response = await client.post(f"/v2/models/{VISION}/infer", content=body, headers=headers)
        _error(response, 413, "64x65 pixels")


async def test_503_not_ready_and_504_timeout_answer_in_the_protocol(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = clone_store(trained_store, tmp_path / "store")
    (store / "corrupt").mkdir()
    (store / "corrupt" / "model.pkl").write_bytes(b"this is not a pickle")
    async for client in client_for(store, request_timeout_s=0.5):
        for response in (
            await client.get("/v2/models/corrupt/ready"),
            await client.get("/v2/models/corrupt"),
            await client.post("/v2/models/corrupt/infer", json={"inputs": []}),
        ):
            _error(response, 503, "failed to load")
            assert response.headers["retry-after"]

        transport: Any = client._transport
        predictor = transport.app.state.registry.get(TABULAR).predictor

        def slow(batch: list[Any]) -> list[np.ndarray]:
            time.sleep(1.5)
            return [np.full((p.n, 2), 0.5, dtype=np.float32) for p in batch]

        monkeypatch.setattr(predictor, "forward_many", slow)
        response = await client.post(
            f"/v2/models/{TABULAR}/infer", json=_tabular_body(adult_rows(adult_frame, 1))
        )
        _error(response, 504, MSG_REQUEST_TIMEOUT.format(seconds=0.5))
        # The other models keep serving (the tabular one is still busy with the slow batch).
        text = base64.b64encode(image_bytes()).decode()
        body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [text]}]}
        ok = await client.post(f"/v2/models/{VISION}/infer", json=body)
        assert ok.status_code == 200, ok.text


def test_v2_requests_are_counted_with_their_protocol(http: httpx.Client, adult_frame: pd.DataFrame) -> None:
    http.post(f"/v2/models/{TABULAR}/infer", json=_tabular_body(adult_rows(adult_frame, 1)))
    text = http.get("/metrics").text
    route = "/v2/models/{name}/infer"
    assert (
        f'fastai_serve_requests_total{{model="{TABULAR}",protocol="v2",route="{route}",status="200"}}' in text
    )


def test_binary_bytes_element_length_past_its_data(http: httpx.Client) -> None:
    header = {
        "inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}
        ]
    }
    body, headers = _binary(header, struct.pack("<I", 100) + b"abcd")
    _error(http.post(f"/v2/models/{VISION}/infer", content=body, headers=headers), 400, "4-byte length")


def test_readme_tritonclient_snippet_runs(server: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from Triton/KServe clients", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace("localhost:8000", server)
    snippet = snippet.replace('"adult-income"', repr(TABULAR)).replace('"cifar10"', repr(VISION))
    monkeypatch.chdir(ROOT)
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "True ['binary_tensor_data']" in printed

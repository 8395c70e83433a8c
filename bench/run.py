"""`make bench`: our predictors vs fastai's own paths vs the compute floor, in-process and over HTTP.

Everything runs in one go on this machine with the demo models, so the ratios compare like with like;
`--peer` (`make bench PEER=1`) or `--peer-only` (`make bench-peer`) adds BentoML serving the same files.
Results are printed as a table and written to .cache/bench/results.json (ignored by git); `make bench-record`
copies a run to the tracked bench/results.json on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import httpx
import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.device import device_label, resolve_device  # noqa: E402
from service.inference.csvio import CsvTable, read_csv_table  # noqa: E402
from service.inference.images import UploadedImage  # noqa: E402
from service.inference.runtime import RuntimeOptions, select_runtime  # noqa: E402
from service.inference.tabular import TabularPredictor  # noqa: E402
from service.inference.vision import VisionPredictor  # noqa: E402
from service.loading import load_exported_learner, prepare_for_serving, sha256_of  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.startup import configure_torch_threads  # noqa: E402
from service.training import data  # noqa: E402

STORE = ROOT / "model_store"
RESULTS = ROOT / ".cache" / "bench" / "results.json"


def per_call(fn: Callable[[], Any], *, seconds: float = 2.0, min_calls: int = 3) -> float:
    """Median seconds per call, after one warm-up call."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired(ours: Callable[[], Any], floor: Callable[[], Any], *, seconds: float = 6.0) -> tuple[float, float]:
    """Median seconds per call of `ours` and of `floor`, timed alternately (one of each per round, the
    order swapped every round), so that a shared machine's drift during the run weighs on both alike."""
    ours(), floor()
    times: tuple[list[float], list[float]] = ([], [])
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:
        pair = ((0, ours), (1, floor)) if rounds % 2 == 0 else ((1, floor), (0, ours))
        for which, fn in pair:
            started = time.perf_counter()
            fn()
            times[which].append(time.perf_counter() - started)
        rounds += 1
    return statistics.median(times[0]), statistics.median(times[1])


def _batched(forward: Callable[[slice], Any], n: int, bs: int) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for start in range(0, n, bs):
                forward(slice(start, start + bs))

    return run


def adult_rows(n: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(data.demo_adult_csv(), skipinitialspace=True, na_values=["?"])
    frame = frame[data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL].dropna()
    frame = pd.concat([frame] * (n // len(frame) + 1)).iloc[:n]
    rows = frame.astype(object).to_dict(orient="records")
    return [{k: (float(v) if k in data.ADULT_CONTINUOUS else v) for k, v in r.items()} for r in rows]


def cifar_jpegs(n: int) -> list[bytes]:
    files = sorted((data.demo_cifar_folder() / "test").rglob("*.jpg"))
    return [files[i % len(files)].read_bytes() for i in range(n)]


def in_process(device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tab = prepare_for_serving(load_exported_learner(STORE / "adult-income" / "model.pkl").learn, device)
    predictor = TabularPredictor(tab)
    vis = prepare_for_serving(load_exported_learner(STORE / "cifar10" / "model.pkl").learn, device)
    vpred = VisionPredictor(vis)
    # The runtime the server would pick (FASTAI_SERVE_RUNTIME, default auto: ONNX Runtime when it matches).
    settings = Settings()
    options = RuntimeOptions(setting=settings.runtime, cache_dir=settings.onnx_cache_dir)
    for pred, name in ((predictor, "adult-income"), (vpred, "cifar10")):
        choice = select_runtime(pred, options, sha256=sha256_of(STORE / name / "model.pkl"))
        out[f"runtime_{name}"] = {"runtime": choice.name, "note": choice.note}
    gc.collect()
    gc.freeze()  # as the server's registry does after loading
    row = adult_rows(1)
    ours_row = per_call(lambda: predictor.predict(row))
    series = pd.Series(row[0])
    naive_row = per_call(lambda: tab.predict(series), seconds=2.0)
    out["tabular_one_row"] = {
        "ours_ms": ours_row * 1e3,
        "learn_predict_ms": naive_row * 1e3,
        "P1_speedup": naive_row / ours_row,
    }

    rows = adult_rows(10_000)
    ours_json = per_call(lambda: predictor.predict(rows), seconds=3.0)
    frame = pd.DataFrame(rows)
    # The CSV route's work between reading the upload and answering: its chunks of the reader's Arrow
    # table, each validated, resolved, encoded and forwarded.
    csv_bytes = frame.to_csv(index=False).encode()
    csv_table = read_csv_table(csv_bytes, filename="bench.csv")

    def table_probabilities(table: CsvTable = csv_table) -> np.ndarray:
        parts = [
            predictor.forward_many([predictor.prepare_chunk(chunk, filename="bench.csv")])[0]
            for chunk in table.chunks()
        ]
        return np.concatenate(parts)

    ours_batch = per_call(table_probabilities, seconds=3.0)
    ours_bytes = per_call(
        lambda: table_probabilities(read_csv_table(csv_bytes, filename="bench.csv")), seconds=3.0
    )
    fastai_batch = per_call(lambda: _get_preds(tab, frame), seconds=3.0)
    x_cat, x_cont = predictor._encoder.encode(predictor.prepare(rows).columns, len(rows))  # type: ignore[union-attr]
    torch_floor, torch_bs = _best_floor(
        lambda s: tab.model(x_cat[s].to(device), x_cont[s].to(device)), len(rows), (1024, 4096, 10_000)
    )
    # Floor L: the fastest runtime's forward on pre-encoded tensors at its best batch size.
    floor, best_bs = torch_floor, torch_bs
    if predictor.runtime.name != "torch":
        floor, best_bs = min(
            (floor, best_bs),
            _best_floor(
                lambda s: predictor.runtime.probabilities(x_cat[s], x_cont[s]),
                len(rows),
                (1024, 4096, 10_000),
            ),
        )
    # The ratio itself from alternating calls of ours and of the floor at its best batch size.
    floor_forward = (
        _batched(lambda s: predictor.runtime.probabilities(x_cat[s], x_cont[s]), len(rows), best_bs)
        if floor != torch_floor  # the fastest runtime's, as found above
        else _batched(lambda s: tab.model(x_cat[s].to(device), x_cont[s].to(device)), len(rows), best_bs)
    )
    paired_ours, paired_floor = paired(table_probabilities, floor_forward)
    out["tabular_10k_rows"] = {
        "input": "CSV text cells -> validated, encoded, forward -> probabilities (the CSV route without I/O)",
        "ours_rows_per_s": 10_000 / ours_batch,
        "ours_from_bytes_rows_per_s": 10_000 / ours_bytes,
        "ours_json_rows_per_s": 10_000 / ours_json,
        "fastai_get_preds_rows_per_s": 10_000 / fastai_batch,
        "floor_rows_per_s": 10_000 / floor,
        "floor_batch_size": best_bs,
        "torch_eager_floor_rows_per_s": 10_000 / torch_floor,
        "P2_ours_vs_floor": paired_floor / paired_ours,
        "P2_paired_ms": {"ours": paired_ours * 1e3, "floor": paired_floor * 1e3},
    }

    jpegs = cifar_jpegs(256)
    uploads = [UploadedImage(f"{i}.jpg", b) for i, b in enumerate(jpegs)]
    ours_vis = per_call(lambda: vpred.predict(uploads), seconds=3.0)
    images = vpred.prepare(uploads).images
    fastai_vis = per_call(lambda: _get_preds(vis, images), seconds=3.0) + per_call(
        lambda: vpred.prepare(uploads)
    )
    decode = per_call(lambda: vpred.prepare(uploads))
    batch = vpred._after_batch((torch.stack([vpred._after_item((im,))[0] for im in images]).to(device),))[0]
    torch_fwd, vbs = _best_floor(lambda s: vis.model(batch[s]), len(images), (32, 64, 128, 256))
    floor_fwd = torch_fwd
    if vpred.runtime.name != "torch":
        onnx_fwd, onnx_bs = _best_floor(
            lambda s: vpred.runtime.probabilities(batch[s]), len(images), (1, 32, 64, 256)
        )
        floor_fwd, vbs = min((torch_fwd, vbs), (onnx_fwd, onnx_bs))
    floor_vis = floor_fwd + decode
    vision_forward = (
        _batched(lambda s: vpred.runtime.probabilities(batch[s]), len(images), vbs)
        if floor_fwd != torch_fwd
        else _batched(lambda s: vis.model(batch[s]), len(images), vbs)
    )
    paired_vis, paired_vis_floor = paired(
        lambda: vpred.predict(uploads), lambda: (vpred.prepare(uploads), vision_forward())
    )
    out["vision_256_images"] = {
        "ours_images_per_s": 256 / ours_vis,
        "fastai_get_preds_images_per_s": 256 / fastai_vis,
        "floor_images_per_s": 256 / floor_vis,
        "floor_batch_size": vbs,
        "torch_eager_floor_images_per_s": 256 / (torch_fwd + decode),
        "decode_ms_per_image": decode / 256 * 1e3,
        "P3_ours_vs_floor": paired_vis_floor / paired_vis,
        "P3_paired_ms": {"ours": paired_vis * 1e3, "floor": paired_vis_floor * 1e3},
    }
    return out


def _get_preds(learn: Any, items: Any) -> Any:
    dl = learn.dls.test_dl(items, num_workers=0)
    with learn.no_bar():
        return learn.get_preds(dl=dl)


def _best_floor(forward: Callable[[slice], Any], n: int, sizes: tuple[int, ...]) -> tuple[float, int]:
    best: tuple[float, int] | None = None
    for bs in sizes:

        def run(bs: int = bs) -> None:
            with torch.inference_mode():
                for start in range(0, n, bs):
                    forward(slice(start, start + bs))

        took = per_call(run, seconds=2.0)
        if best is None or took < best[0]:
            best = (took, bs)
    assert best is not None
    return best


# --- HTTP --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ours(port: int, env: dict[str, str], *, workers: int = 1) -> subprocess.Popen[bytes]:
    """fastai-serve as users start it (`fastai-serve serve`): what the CLI sets up is measured too."""
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return start_process(cmd, port=port, ready_path="/health/ready", env=env)


def start_server(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Another ASGI app under uvicorn (the naive server)."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return start_process(cmd, port=port, ready_path="/health/ready", env=env)


def start_process(
    cmd: list[str], *, port: int, ready_path: str, env: dict[str, str], cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group and wait until `ready_path` answers 200."""
    (ROOT / ".cache").mkdir(exist_ok=True)
    log = (ROOT / ".cache" / f"bench-{port}.log").open("wb")  # a file: an unread pipe would fill and block
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers too are stopped with it (stop_process)
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_process(proc)
    raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:4])} did not become ready; see {log.name}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT to the server's process group (a graceful stop), SIGKILL after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def load(
    base: str, kind: str, clients: int, seconds: float, payload: dict[str, Any]
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    if kind in V2_KINDS:
                        path, body, headers = v2_payload(kind, payload)
                        r = await client.post(path, content=body, headers=headers)
                    elif kind == "tabular":
                        r = await client.post("/api/v1/tabular/adult-income/predict", json=payload["json"])
                    else:
                        r = await client.post("/api/v1/vision/cifar10/predict", files=payload["files"])
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies)
    return {
        "requests_per_s": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "errors": errors,
        "requests": len(lat),
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
V2_KINDS = ("v2_tabular", "v2_vision")  # the same one-item requests over the Open Inference Protocol


def v2_binary_body(inputs: list[tuple[str, str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A binary-extension infer request (as tritonclient sends it): JSON header, then each input's bytes."""
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": t, "shape": [1], "parameters": {"binary_data_size": len(raw)}}
                for n, t, raw in inputs
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = header + b"".join(raw for _, _, raw in inputs)
    return body, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def v2_payload(kind: str, payload: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    def text(value: Any) -> bytes:
        # A category that is an amount (the demo's capital gain/loss) is sent as its text: "2174".
        raw = str(int(value) if isinstance(value, float) and value.is_integer() else value).encode()
        return len(raw).to_bytes(4, "little") + raw

    if kind == "v2_tabular":
        [row] = payload["json"]["rows"]
        inputs = [
            (k, "FP64", np.array([v], "<f8").tobytes())
            if k in data.DEMO_ADULT_CONTINUOUS
            else (k, "BYTES", text(v))
            for k, v in row.items()
        ]
        body, headers = v2_binary_body(inputs)
        return "/v2/models/adult-income/infer", body, headers
    _, content, _ = payload["files"][0][1]
    body, headers = v2_binary_body([("image", "BYTES", len(content).to_bytes(4, "little") + content)])
    return "/v2/models/cifar10/infer", body, headers


def load_wrk(base: str, kind: str, clients: int, seconds: float, payload: dict[str, Any]) -> dict[str, float]:
    """The same load with wrk (C, event-driven): the generator takes far less of the 2 cores than Python."""
    cache = ROOT / ".cache"
    extra: dict[str, str] = {}
    if kind in V2_KINDS:
        path, body, extra = v2_payload(kind, payload)
        ctype = extra.pop("Content-Type")
    elif kind == "tabular":
        body, ctype, path = (
            json.dumps(payload["json"]).encode(),
            "application/json",
            "/api/v1/tabular/adult-income/predict",
        )
    else:
        name, content, mime = payload["files"][0][1]
        boundary = "fastaiservebench"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: {mime}\r\n\r\n".encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        ctype, path = f"multipart/form-data; boundary={boundary}", "/api/v1/vision/cifar10/predict"
    body_file = cache / f"bench-{kind}.body"
    body_file.write_bytes(body)
    script = cache / f"bench-{kind}.lua"
    script.write_text(
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{ctype}"\n'
        + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in extra.items())
    )
    cmd = [
        "wrk",
        f"-t{min(2, clients)}",
        f"-c{clients}",
        f"-d{int(seconds)}s",
        "--latency",
        "-s",
        str(script),
        base + path,
    ]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pct = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in {"50%", "99%"}:
            value, unit = re.match(r"([\d.]+)(\w+)", parts[1]).groups()  # type: ignore[union-attr]
            pct[parts[0]] = float(value) * _UNITS[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    return {
        "requests_per_s": rps,
        "p50_ms": pct["50%"],
        "p99_ms": pct["99%"],
        "errors": errors,
        "requests": total,
    }


def one_item_payloads() -> dict[str, dict[str, Any]]:
    """The one-row and one-image requests every HTTP row sends."""
    return {
        "tabular": {"json": {"rows": adult_rows(1)}},
        "vision": {"files": [("files", ("plane.jpg", cifar_jpegs(1)[0], "image/jpeg"))]},
    }


def drive(base: str, kind: str, clients: int, seconds: float, payload: dict[str, Any]) -> dict[str, float]:
    """One load step: wrk when installed, else the httpx generator."""
    if shutil.which("wrk"):
        return load_wrk(base, kind, clients, seconds, payload)
    return asyncio.run(load(base, kind, clients, seconds, payload))


def http(seconds: float, rss_requests: int) -> dict[str, Any]:
    env = {"FASTAI_SERVE_MODEL_STORE": str(STORE), "FASTAI_SERVE_LOG_LEVEL": "warning"}
    payloads = one_item_payloads()
    out: dict[str, Any] = {}
    for label in ("ours", "naive"):
        port = free_port()
        proc = start_ours(port, env) if label == "ours" else start_server("bench.naive_server:app", port, env)
        try:
            base = f"http://127.0.0.1:{port}"
            for kind in ("tabular", "vision"):
                for clients in (1, 8, 32):
                    out[f"{label}_{kind}_c{clients}"] = drive(base, kind, clients, seconds, payloads[kind])
            for kind in V2_KINDS if label == "ours" else ():
                payload = payloads[kind.removeprefix("v2_")]
                for clients in (1, 32):
                    out[f"ours_{kind}_c{clients}"] = drive(base, kind, clients, seconds, payload)
            if label == "ours":
                out["ours_memory"] = memory_growth(base, proc.pid, payloads["tabular"], rss_requests)
                out["ours_large_csv"] = large_csv(base, proc.pid)
        finally:
            stop_process(proc)
    # The same server as `fastai-serve serve --workers 2` runs it: a process per core, each with every
    # model (ONNX Runtime's threads not spinning, so the workers do not take each other's cores).
    port = free_port()
    proc = start_ours(port, env, workers=2)
    try:
        for kind in ("tabular", "vision"):
            for clients in (1, 32):
                base = f"http://127.0.0.1:{port}"
                out[f"workers2_{kind}_c{clients}"] = drive(base, kind, clients, seconds, payloads[kind])
    finally:
        stop_process(proc)
    return out


def memory_growth(base: str, pid: int, payload: dict[str, Any], requests: int) -> dict[str, float]:
    async def fire(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def one() -> None:
                async with sem:
                    await client.post("/api/v1/tabular/adult-income/predict", json=payload["json"])

            await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(fire(500))  # warm-up
    warm = rss_kb(pid)
    asyncio.run(fire(requests))
    after = rss_kb(pid)
    return {
        "rss_after_warmup_mb": warm / 1024,
        "rss_after_requests_mb": after / 1024,
        "requests": requests,
        "peak_rss_mb": rss_kb(pid, "VmHWM") / 1024,
        "P6_growth_pct": (after - warm) / warm * 100,
    }


LARGE_CSV_ROWS = 100_000


def large_csv(base: str, pid: int) -> dict[str, Any]:
    """One 100,000-row CSV through evaluate and predict/csv (JSON, then `Accept: text/csv`): the time, and
    the server's peak RSS growth during the request over the upload's size. The peak is reset through
    /proc/<pid>/clear_refs before each request, so each figure is that request's own: first the server's
    first large file (evaluate, after a 1,000-row one: the allocator's arenas and Arrow's pools grow to a
    large file's size once), then each endpoint again (what every later large file costs)."""
    frame = pd.read_csv(data.demo_adult_csv(), skipinitialspace=True, na_values=["?"])
    frame = pd.concat([frame] * (LARGE_CSV_ROWS // len(frame) + 1), ignore_index=True).iloc[:LARGE_CSV_ROWS]
    upload = frame.to_csv(index=False).encode()
    small = frame.iloc[:1000].to_csv(index=False).encode()
    model = "/api/v1/tabular/adult-income"
    steps = {
        "evaluate": (f"{model}/evaluate", {}),
        "predict_csv_json": (f"{model}/predict/csv", {}),
        "predict_csv_text": (f"{model}/predict/csv", {"Accept": "text/csv"}),
    }
    out: dict[str, Any] = {"rows": LARGE_CSV_ROWS, "upload_mb": len(upload) / 2**20}
    with httpx.Client(base_url=base, timeout=300) as client:

        def measured(path: str, headers: dict[str, str], body: bytes) -> dict[str, float]:
            before = rss_kb(pid)
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak RSS starts again from now
            started = time.perf_counter()
            response = client.post(path, files={"file": ("big.csv", body, "text/csv")}, headers=headers)
            took = time.perf_counter() - started
            response.raise_for_status()
            growth = (rss_kb(pid, "VmHWM") - before) * 1024
            return {
                "seconds": took,
                "rows_per_s": LARGE_CSV_ROWS / took,
                "answer_mb": len(response.content) / 2**20,
                "peak_growth_mb": growth / 2**20,
                "peak_growth_over_upload": growth / len(upload),
            }

        path, headers = steps["evaluate"]
        client.post(path, files={"file": ("small.csv", small, "text/csv")}).raise_for_status()
        out["first_large_file"] = measured(path, headers, upload)
        for name, (path, headers) in steps.items():
            out[name] = measured(path, headers, upload)
    return out


# --- the peer: BentoML with adaptive batching around fastai's batch path ------------------------------------

PEER_VENV = ROOT / ".cache" / "venv-bentoml"
PEER_SERVICE = "bentoml_service:FastaiPeer"  # bench/peers/bentoml_service.py
# The aims against it: throughput at 32 clients, p50 latency at one client. 32 clients first: BentoML
# sizes its batching wait from recent batches' waits (refit every 5 s, 5% less each time); fresh from start-up
# its training batches have taught it to hold a lone client ~0.5 s, after a busy spell it holds it tens of ms.
PEER_AIMS = {("vision", 32): 3.0, ("vision", 1): 2.0, ("tabular", 32): 3.0, ("tabular", 1): 5.0}
PARITY_ITEMS = 8
PARITY_TOLERANCE = 1e-4


def peer(seconds: float, venv: Path) -> dict[str, Any]:
    """Our server, then BentoML (bench/peers/bentoml_service.py), on the same model files: the same
    predictions first (labels equal, probabilities within 1e-4, or no timing at all), then the same wrk rows."""
    env = {"FASTAI_SERVE_MODEL_STORE": str(STORE), "FASTAI_SERVE_LOG_LEVEL": "warning"}
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    bentoml_cmd = [str(venv / "bin" / "bentoml"), "serve", PEER_SERVICE, "--host", "127.0.0.1", "--port"]
    payloads = one_item_payloads()
    answers: dict[str, list[tuple[str, dict[str, float]]]] = {}
    runs: dict[str, dict[str, dict[str, float]]] = {"ours": {}, "bentoml": {}}
    parity: dict[str, Any] = {}
    for label in ("ours", "bentoml"):
        port = free_port()
        if label == "ours":
            proc = start_ours(port, env)
        else:
            proc = start_process(
                [*bentoml_cmd, str(port)],
                port=port,
                ready_path="/readyz",
                env={**env, "BENTOML_DO_NOT_TRACK": "True"},
                cwd=ROOT / "bench" / "peers",
            )
        try:
            base = f"http://127.0.0.1:{port}"
            answers[label] = parity_answers(base)
            if label == "bentoml":
                parity = same_predictions(answers["ours"], answers["bentoml"])
            for kind, clients in PEER_AIMS:
                # A first run to warm up: BentoML's batcher learns its waits from the traffic it sees.
                drive(base, kind, clients, seconds, payloads[kind])
                runs[label][f"{kind}_c{clients}"] = drive(base, kind, clients, seconds, payloads[kind])
        finally:
            stop_process(proc)
    rows: dict[str, Any] = {}
    for (kind, clients), aim in PEER_AIMS.items():
        ours, theirs = runs["ours"][f"{kind}_c{clients}"], runs["bentoml"][f"{kind}_c{clients}"]
        # 32 clients: answered requests per second (a shed request is not an answer); one client: p50.
        ratio = ok_per_s(ours) / ok_per_s(theirs) if clients > 1 else theirs["p50_ms"] / ours["p50_ms"]
        rows[f"{kind}_c{clients}"] = {"ours": ours, "bentoml": theirs, "ratio": ratio, "aim": aim}
    return {"bentoml_version": version, "parity": parity, "rows": rows}


def ok_per_s(run: dict[str, float]) -> float:
    return run["requests_per_s"] * (run["requests"] - run["errors"]) / max(run["requests"], 1)


def parity_answers(base: str) -> list[tuple[str, dict[str, float]]]:
    """(label, probabilities) for PARITY_ITEMS images and rows, each kind in one request."""
    images = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(cifar_jpegs(PARITY_ITEMS))]
    out = []
    for r in (
        httpx.post(f"{base}/api/v1/vision/cifar10/predict", files=images, timeout=60),
        httpx.post(
            f"{base}/api/v1/tabular/adult-income/predict", json={"rows": adult_rows(PARITY_ITEMS)}, timeout=60
        ),
    ):
        r.raise_for_status()
        body = r.json()
        # Ours wraps the predictions in an object; BentoML answers the list.
        predictions = body["predictions"] if isinstance(body, dict) else body
        out += [(p["label"], p["probabilities"]) for p in predictions]
    return out


def same_predictions(
    ours: list[tuple[str, dict[str, float]]], theirs: list[tuple[str, dict[str, float]]]
) -> dict[str, Any]:
    """Labels equal and probabilities within PARITY_TOLERANCE, or the comparison would not be like for like."""
    labels_equal = len(ours) == len(theirs) and all(a[0] == b[0] for a, b in zip(ours, theirs, strict=False))
    diff = max(
        (abs(p - b[1][c]) for a, b in zip(ours, theirs, strict=False) for c, p in a[1].items()), default=0.0
    )
    if not labels_equal or diff > PARITY_TOLERANCE:
        raise RuntimeError(
            f"BentoML's predictions differ from ours (labels equal: {labels_equal}, max |dp| {diff:.2e}): "
            "not timing a different computation"
        )
    return {"items": len(ours), "labels_equal": labels_equal, "max_abs_diff": diff}


def peer_table(p: dict[str, Any]) -> list[str]:
    par = p["parity"]
    lines = [
        f"Peer: BentoML {p['bentoml_version']}, adaptive batching around fastai's test_dl + get_preds, same model files;"
        f" predictions equal on {par['items']} items (labels, max |dp| {par['max_abs_diff']:.1e})",
        "                 clients   ours req/s  p50 ms  p99 ms  err | bentoml req/s  p50 ms  p99 ms  err | ours vs bentoml",
    ]
    for key, row in p["rows"].items():
        kind, clients = key.split("_c")
        o, b = row["ours"], row["bentoml"]
        what = "answered req/s" if int(clients) > 1 else "p50 latency"
        lines.append(
            f"{kind:<8} 1 item  {clients:>7}   {o['requests_per_s']:10.1f} {o['p50_ms']:7.1f} {o['p99_ms']:7.1f} {o['errors']:4d} |"
            f" {b['requests_per_s']:13.1f} {b['p50_ms']:7.1f} {b['p99_ms']:7.1f} {b['errors']:4d} |"
            f" {row['ratio']:5.2f}x {what} (aim >= {row['aim']:g}x)"
        )
    return lines


def _beside(h: dict[str, Any], prefix: str, names: tuple[str, str], *, share: bool) -> list[str]:
    """One line per kind and client count: our plain server's row, then `prefix`'s beside it."""
    lines = []
    for kind in ("tabular", "vision"):
        for c in (1, 32):
            o, other = h[f"ours_{kind}_c{c}"], h.get(f"{prefix}_{kind}_c{c}")
            if other is None:
                continue
            ratio = f" ({other['requests_per_s'] / o['requests_per_s']:.0%} of {names[0]})" if share else ""
            lines.append(
                f"{kind:<8} clients {c:>3}   {names[0]} {o['requests_per_s']:8.1f} req/s p50 {o['p50_ms']:6.1f} ms |"
                f" {names[1]} {other['requests_per_s']:8.1f} req/s p50 {other['p50_ms']:6.1f} ms"
                f" p99 {other['p99_ms']:6.1f} ms err {other['errors']}{ratio}"
            )
    return lines


def table(results: dict[str, Any]) -> str:
    lines = [f"fastai-serve bench — {results['machine']}; load generator: {results['load_generator']}", ""]
    ip = results["in_process"]
    t1, t2, v = ip["tabular_one_row"], ip["tabular_10k_rows"], ip["vision_256_images"]
    lines += [
        "in-process                      ours            fastai (B / learn.predict)   floor (L)        ratio",
        f"tabular 1 row                   {t1['ours_ms']:8.3f} ms     {t1['learn_predict_ms']:8.2f} ms (predict)"
        f"                       P1 {t1['P1_speedup']:6.1f}x  (target >= 100x)",
        f"tabular 10k rows                {t2['ours_rows_per_s']:8.0f} rows/s {t2['fastai_get_preds_rows_per_s']:8.0f} rows/s (B)"
        f"     {t2['floor_rows_per_s']:8.0f} rows/s  P2 {t2['P2_ours_vs_floor']:6.0%}  (target >= 75%)",
        f"  from the CSV's bytes          {t2.get('ours_from_bytes_rows_per_s', 0):8.0f} rows/s (pyarrow's reader included)",
        f"  same rows as JSON objects     {t2['ours_json_rows_per_s']:8.0f} rows/s (validated per row, Prediction objects)",
        f"vision 256 images               {v['ours_images_per_s']:8.0f} img/s  {v['fastai_get_preds_images_per_s']:8.0f} img/s (B)"
        f"      {v['floor_images_per_s']:8.0f} img/s   P3 {v['P3_ours_vs_floor']:6.0%}  (target >= 85%)",
        f"  runtime: tabular {ip['runtime_adult-income']['runtime']}, vision {ip['runtime_cifar10']['runtime']};"
        f" torch-eager L: {t2['torch_eager_floor_rows_per_s']:.0f} rows/s, {v['torch_eager_floor_images_per_s']:.0f} img/s",
        *(
            [
                f"  P2 and P3 from alternating calls: 10k rows {t2['P2_paired_ms']['ours']:.2f} ms vs floor"
                f" {t2['P2_paired_ms']['floor']:.2f} ms; 256 images {v['P3_paired_ms']['ours']:.1f} ms vs floor"
                f" {v['P3_paired_ms']['floor']:.1f} ms"
            ]
            if "P2_paired_ms" in t2 and "P3_paired_ms" in v
            else []
        ),
        "",
        "HTTP (loopback)     clients   ours req/s  p50 ms  p99 ms  err |  naive req/s  p50 ms  p99 ms  err",
    ]
    h = results["http"]
    for kind in ("tabular", "vision"):
        for c in (1, 8, 32):
            o, n = h[f"ours_{kind}_c{c}"], h[f"naive_{kind}_c{c}"]
            lines.append(
                f"{kind:<8} 1 item     {c:>7}   {o['requests_per_s']:10.1f} {o['p50_ms']:7.1f} {o['p99_ms']:7.1f} {o['errors']:4d} |"
                f" {n['requests_per_s']:11.1f} {n['p50_ms']:7.1f} {n['p99_ms']:7.1f} {n['errors']:4d}"
            )
    lines += ["", "Open Inference Protocol (/v2, binary tensors) beside /api/v1, same one-item requests:"]
    lines += _beside(h, "ours_v2", ("v1", "v2"), share=True)
    lines += ["", "Two worker processes (fastai-serve serve --workers 2) beside one, same one-item requests:"]
    lines += _beside(h, "workers2", ("1 worker", "2 workers"), share=False)
    r = results["ratios"]
    mem = h["ours_memory"]
    lines += [
        "",
        f"P4 vision HTTP @32: {r['P4_vs_P3']:.0%} of in-process images/s (target >= 50%), {r['P4_vs_naive']:.1f}x naive (target >= 15x)",
        f"   with 2 workers: {r.get('P4_workers2_vs_P3', 0):.0%} of in-process, {r.get('P4_workers2_vs_naive', 0):.1f}x naive;"
        f" P7 with 2 workers: {r.get('P7_workers2_vs_naive_p50', 0):.1f}x",
        f"P5 tabular HTTP @32: {r['P5_vs_naive']:.1f}x naive (target >= 20x), p99/p50 = {r['P5_p99_over_p50']:.2f} (target <= 3)",
        f"P6 RSS {mem['rss_after_warmup_mb']:.0f} MB after warm-up -> {mem['rss_after_requests_mb']:.0f} MB after"
        f" {mem['requests']} requests: {mem['P6_growth_pct']:+.1f}% (target <= 5%); peak {mem['peak_rss_mb']:.0f} MB",
        f"P7 one client, one image: p50 {r['P7_vs_naive_p50']:.1f}x faster than the naive server (target >= 4x)",
    ]
    big = h.get("ours_large_csv")
    if big is not None:
        lines += [
            "",
            f"One {big['rows']:,}-row CSV ({big['upload_mb']:.1f} MB) in one request: time, peak RSS growth",
        ]
        for name in ("first_large_file", "evaluate", "predict_csv_json", "predict_csv_text"):
            step = big[name]
            lines.append(
                f"  {name:<18} {step['seconds']:6.2f} s {step['rows_per_s']:9.0f} rows/s"
                f"  +{step['peak_growth_mb']:5.1f} MB = {step['peak_growth_over_upload']:.1f}x the upload (target <= 3x)"
            )
    if "peer" in results:
        lines += ["", *peer_table(results["peer"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each HTTP load step")
    parser.add_argument("--rss-requests", type=int, default=10_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--peer", action="store_true", help="also BentoML, side by side (make bench-peer builds it)"
    )
    parser.add_argument(
        "--peer-only", action="store_true", help="only the BentoML rows, added to the last results"
    )
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV)
    args = parser.parse_args()
    settings = Settings()
    configure_torch_threads(settings)
    device = resolve_device(settings.device)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {device_label(device)}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "load_generator": "wrk" if shutil.which("wrk") else "httpx (install wrk for a lighter generator)",
    }
    if args.peer_only:
        # Kept beside the last full run's numbers (when there is one) under its own key.
        earlier = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results = {**earlier, "peer": {**peer(args.seconds, args.peer_venv), **results}}
        print("\n".join(peer_table(results["peer"])))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
        return
    results["in_process"] = in_process(device)
    if args.peer:
        results["peer"] = peer(args.seconds, args.peer_venv)
    if not args.skip_http:
        results["http"] = http(args.seconds, args.rss_requests)
        h, ip = results["http"], results["in_process"]
        results["ratios"] = {
            "P4_vs_P3": h["ours_vision_c32"]["requests_per_s"] / ip["vision_256_images"]["ours_images_per_s"],
            "P4_vs_naive": h["ours_vision_c32"]["requests_per_s"] / h["naive_vision_c32"]["requests_per_s"],
            "P5_vs_naive": h["ours_tabular_c32"]["requests_per_s"] / h["naive_tabular_c32"]["requests_per_s"],
            "P5_p99_over_p50": h["ours_tabular_c32"]["p99_ms"] / h["ours_tabular_c32"]["p50_ms"],
            "P7_vs_naive_p50": h["naive_vision_c1"]["p50_ms"] / h["ours_vision_c1"]["p50_ms"],
            "P4_workers2_vs_P3": h["workers2_vision_c32"]["requests_per_s"]
            / ip["vision_256_images"]["ours_images_per_s"],
            "P4_workers2_vs_naive": h["workers2_vision_c32"]["requests_per_s"]
            / h["naive_vision_c32"]["requests_per_s"],
            "P7_workers2_vs_naive_p50": h["naive_vision_c1"]["p50_ms"] / h["workers2_vision_c1"]["p50_ms"],
        }
        print(table(results))
    else:
        print(json.dumps(results["in_process"], indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

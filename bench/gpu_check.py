"""CUDA, proven (issue 26): `make gpu-check` (`python -m bench.gpu_check`), one prepared script for a machine
with a GPU, whose CPU half runs anywhere (and in the normal test suite, so it cannot rot).

1. Parity: every model of the demo store (those built) and a tiny learner of every kind and task (built here
   in seconds, tests/tiny*.py) is loaded on the CPU and on `cuda:0`; on the same encoded inputs (each
   predictor's parity inputs: its self-check item, then a random batch) the CUDA answers of each runtime —
   torch fp32, ONNX Runtime with its CUDA execution provider where installed, torch under float16 autocast
   (`FASTAI_SERVE_PRECISION=fp16`) — must match the CPU's torch fp32 answers: within 1e-3 (fp16: 1e-2),
   labels equal where the CPU's two best classes are clear of each other.
2. HTTP: the server (`fastai-serve serve`, `FASTAI_SERVE_DEVICE=cuda`) over all those models: every model is
   ready on `cuda:0` in `/api/v1/models`, one `/predict` per model answers, and `/metrics`' model info says
   the device.
3. Speed: images/s of the demo vision model (else the tiny one) at batch 1, 32 and 128, fp32 and fp16.

Without a CUDA device it says "no CUDA device" and runs its CPU half: the same parity between torch and ONNX
Runtime on the CPU, the server on `cpu`, images/s on the CPU in fp32. One JSON of results is written
(`--out`, default `$OUT` when set, else `.cache/gpu-check`) and a short table printed; the exit status is 1
when a check failed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import CACHE, DEFAULT_STORE

PARITY = 1e-3  # CUDA against the CPU, fp32 (issue 26)
BATCHES = (1, 32, 128)
DEMO_VISION = "cifar10"


# -- the models ------------------------------------------------------------------------------------------
def build_tiny_store(store: Path) -> Path:
    """A tiny real learner of every kind and task beside the classifiers (tests/tiny*.py), in seconds."""
    import pandas as pd

    from service.training import data
    from tests.tiny import build_task_learners
    from tests.tiny_collab import build_collab_learners
    from tests.tiny_segmentation import build_segmentation_learners
    from tests.tiny_text import build_text_learners

    frame = pd.read_csv(data.demo_adult_csv(), skipinitialspace=True, na_values=["?"]).iloc[:3000]
    build_task_learners(store, frame)
    build_text_learners(store)
    build_collab_learners(store)
    build_segmentation_learners(store, store / ".seg-data")
    return store


def model_folders(stores: list[Path]) -> dict[str, Path]:
    """Every learner of the stores by a unique name: a later store's name already taken gets `tiny-`."""
    out: dict[str, Path] = {}
    for store in stores:
        for folder in sorted(f for f in store.iterdir() if (f / "model.pkl").is_file()):
            out[folder.name if folder.name not in out else f"tiny-{folder.name}"] = folder
    return out


def load(folder: Path, device: Any, **runtime: Any) -> tuple[Any, Any]:
    """(predictor, runtime choice) of the learner in `folder` on `device`, as the server loads it."""
    from service.inference.kinds import build_predictor, recognise
    from service.inference.runtime import RuntimeOptions, select_runtime
    from service.loading import load_exported_learner, prepare_for_serving

    learn = prepare_for_serving(load_exported_learner(folder / "model.pkl").learn, device)
    predictor = build_predictor(recognise(learn), learn, folder=folder)
    choice = select_runtime(predictor, RuntimeOptions(**runtime), sha256=None)
    return predictor, choice


def parity(name: str, folder: Path, device: Any, reference: Any) -> list[dict[str, Any]]:
    """Each runtime on `device` against torch fp32 on the CPU (`reference`), on its parity inputs."""
    import onnxruntime as ort

    from service.inference.runtime import (
        FP16_TOLERANCE,
        Precision,
        RuntimeSetting,
        parity_gap,
    )

    model, inputs = name, reference.parity_inputs()
    expected = [reference.runtime.outputs(*x) for x in inputs]
    runs: list[tuple[str, dict[str, Any], float]] = [("torch", {}, PARITY)]
    if device.type == "cpu" or "CUDAExecutionProvider" in ort.get_available_providers():
        runs.append(("onnx", {"setting": RuntimeSetting.AUTO}, PARITY))
    if device.type == "cuda":
        runs.append(("torch-fp16", {"precision": Precision.FP16}, FP16_TOLERANCE))
    rows = []
    for name, options, tolerance in runs:
        row: dict[str, Any] = {"model": model, "runtime": name, "device": str(device)}
        try:
            predictor, choice = load(folder, device, **options)
            row |= {"kind": str(predictor.kind), "task": str(predictor.head.task), "note": choice.note}
            if choice.name != name.split("-")[0] or (name == "torch-fp16" and choice.precision != "fp16"):
                # Not served so (what the server does too: the model stays torch fp32, its note says why).
                rows.append(row | {"ok": True, "served": False})
                continue
            got = [predictor.runtime.outputs(*x) for x in inputs]
            gaps = [
                parity_gap(e, g, labels=predictor.classifies, tolerance=tolerance)
                for e, g in zip(expected, got, strict=True)
            ]
            row |= {"max_gap": max(gaps), "tolerance": tolerance, "ok": True, "served": True}
        except Exception as exc:  # noqa: BLE001 - a failed check is a row of the report
            row |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
    return rows


# -- the server ------------------------------------------------------------------------------------------
def _image(size: tuple[int, int] = (32, 32)) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _tabular_request(detail: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column in detail["input_schema"]["columns"]:
        categories = column.get("categories")
        row[column["name"]] = column.get("mean", 0.0) if categories is None else categories[-1]
    return {"json": {"rows": [row]}}


def _collab_request(detail: dict[str, Any], predictor: Any) -> dict[str, Any]:
    return {"json": {"pairs": [{"user": predictor.users.ids[1], "item": predictor.items.ids[1]}]}}


# One /predict per kind: (model detail, the predictor loaded here) -> httpx keyword arguments.
REQUESTS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "tabular": lambda detail, predictor: _tabular_request(detail),
    "vision": lambda detail, predictor: {"files": [("files", ("x.png", _image(), "image/png"))]},
    "text": lambda detail, predictor: {"json": {"texts": ["a lovely film, and a great story"]}},
    "collab": _collab_request,
}


def http_check(folders: dict[str, Path], device: Any, predictors: dict[str, Any]) -> dict[str, Any]:
    """The server over `folders` on `device`: every model ready there, one answer each, the metrics' label."""
    import httpx

    from bench.servers import free_port, start_ours, stop_process

    store = Path(tempfile.mkdtemp(prefix="gpu-check-store-"))
    for name, folder in folders.items():  # hard links, as tests/helpers.clone_store makes them
        shutil.copytree(folder, store / name, copy_function=os.link)
    port = free_port()
    env = {
        "FASTAI_SERVE_MODEL_STORE": str(store),
        "FASTAI_SERVE_DEVICE": "cuda" if device.type == "cuda" else "cpu",
        "FASTAI_SERVE_GRPC_PORT": "0",
        "FASTAI_SERVE_LOG_LEVEL": "warning",
    }
    expected = "cuda:0" if device.type == "cuda" else "cpu"
    out: dict[str, Any] = {"device": expected, "models": {}}
    server = start_ours(port, env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for model in client.get("/api/v1/models").json()["models"]:
                name = model["name"]
                row: dict[str, Any] = {"status": model["status"], "device": model["device"]}
                if model["status"] == "ready":
                    detail = client.get(f"/api/v1/models/{name}").json()
                    request = REQUESTS[model["kind"]](detail, predictors.get(name))
                    answer = client.post(f"/api/v1/{model['kind']}/{name}/predict", **request)
                    row["predict_status"] = answer.status_code
                row["ok"] = row["device"] == expected and row.get("predict_status") == 200
                out["models"][name] = row
            metrics = client.get("/metrics").text
    finally:
        stop_process(server)
    labelled = [line for line in metrics.splitlines() if line.startswith("fastai_serve_model_info{")]
    out["metrics_device_labels"] = sum(f'device="{expected}"' in line for line in labelled)
    out["ok"] = (
        bool(out["models"])
        and all(r["ok"] for r in out["models"].values())
        and out["metrics_device_labels"] == len(out["models"])
    )
    return out


# -- speed -----------------------------------------------------------------------------------------------
def images_per_second(
    name: str, folder: Path, device: Any, *, batches: tuple[int, ...], seconds: float
) -> list[dict[str, Any]]:
    """Images/s of the vision model's forward (encode, model, activation; decoded images) per batch size,
    fp32 and, on CUDA, fp16."""
    from service.inference.images import UploadedImage
    from service.inference.runtime import Precision, RuntimeSetting

    precisions = [Precision.FP32] + ([Precision.FP16] if device.type == "cuda" else [])
    rows = []
    for precision in precisions:
        predictor, choice = load(folder, device, setting=RuntimeSetting.TORCH, precision=precision)
        for batch in batches:
            uploads = [UploadedImage(f"{i}.png", _image()) for i in range(batch)]
            prepared = predictor.prepare(uploads)
            predictor.forward_many([prepared])  # warm: CUDA context, cudnn's algorithm choice
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                predictor.forward_many([prepared])
                n += batch
            rate = n / (time.perf_counter() - started)
            rows.append(
                {
                    "model": folder.name,
                    "precision": choice.precision.value,
                    "batch": batch,
                    "images_per_s": rate,
                }
            )
    return rows


# -- the run ---------------------------------------------------------------------------------------------
def run(
    stores: list[Path],
    *,
    batches: tuple[int, ...] = BATCHES,
    seconds: float = 2.0,
    http: bool = True,
) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda:0") if cuda else torch.device("cpu")
    folders = model_folders(stores)
    result: dict[str, Any] = {
        "cuda": cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "models": {name: str(f) for name, f in folders.items()},
    }
    cpu = {name: load(f, torch.device("cpu"))[0] for name, f in folders.items()}  # the reference answers
    result["parity"] = [row for name, f in folders.items() for row in parity(name, f, device, cpu[name])]
    if http:
        result["http"] = http_check(folders, device, cpu)
    vision = [name for name in folders if str(cpu[name].kind) == "vision" and cpu[name].classifies]
    timed = DEMO_VISION if DEMO_VISION in vision else vision[0] if vision else None
    if timed is not None:
        result["throughput"] = images_per_second(
            timed, folders[timed], device, batches=batches, seconds=seconds
        )
    result["ok"] = all(r["ok"] for r in result["parity"]) and result.get("http", {"ok": True})["ok"]
    return result


def lines(result: dict[str, Any]) -> list[str]:
    out = [
        f"device: {result['device']} ({result['device_name']}), torch {result['torch']}, "
        f"onnxruntime {result['onnxruntime']} {result['onnxruntime_providers']}"
    ]
    if not result["cuda"]:
        out.append("no CUDA device: the CPU half (ONNX Runtime against torch on the CPU, the server on cpu)")
    out.append(f"{'model':<24} {'runtime':<11} {'max gap':>9}  ok")
    for row in result["parity"]:
        gap = f"{row['max_gap']:.1e}" if "max_gap" in row else "-"
        ok = "yes" if row["ok"] and row.get("served") else "not served so" if row["ok"] else "NO"
        out.append(f"{row['model']:<24} {row['runtime']:<11} {gap:>9}  {ok}")
        if not row["ok"]:
            out.append(f"    {row.get('error', '')}")
    if "http" in result:
        h = result["http"]
        ready = sum(r["ok"] for r in h["models"].values())
        out.append(
            f"server on {h['device']}: {ready}/{len(h['models'])} models ready there and answering, "
            f'{h["metrics_device_labels"]} model_info series labelled device="{h["device"]}"'
        )
    for row in result.get("throughput", []):
        out.append(
            f"{row['model']} {row['precision']} batch {row['batch']:>3}: {row['images_per_s']:,.0f} images/s"
        )
    out.append("all checks passed" if result["ok"] else "SOME CHECKS FAILED")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="the demo models (those built)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or CACHE / "gpu-check"))
    parser.add_argument("--seconds", type=float, default=2.0, help="per batch size, for images/s")
    args = parser.parse_args()
    stores = [args.store] if args.store.is_dir() else []
    with tempfile.TemporaryDirectory(prefix="gpu-check-tiny-") as tiny:
        stores.append(build_tiny_store(Path(tiny)))
        result = run(stores, seconds=args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(lines(result)))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()

"""Explanations, measured (issue 24): faithfulness, completeness, and what a steady explain load costs
predictions.

- Occlusion on the demo image model (`cifar10`): the mean drop of the predicted class's probability when the
  20% of pixels each method's map ranks highest are occluded, against 20% at random
  (`service/explain/faithfulness.py`), over the shipped test images.
- Completeness of integrated gradients on the demo tabular and text models: |base_value + sum(attributions)
  - output| per row or text, mean and max.
- Prediction latency with and without explanations running: one client predicting one image (p50, p99) from
  our server, alone, then while another client posts explain requests back to back (integrated gradients,
  one image each: the costlier method), in one run.
`python -m bench.explain_bench [--store model_store]` (`make bench-explain`); `python -m bench` runs it too.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import CACHE, DEFAULT_STORE
from bench.cases import adult_rows, cifar_jpegs, review_sentences
from bench.load import Request, drive
from bench.servers import free_port, server_env, start_ours, stop_process

IMAGES, ROWS, TEXTS = 200, 200, 50
VISION_MODEL, TABULAR_MODEL, TEXT_MODEL = "cifar10", "adult-income", "reviews-sentiment"


def _registry(store: Path) -> Any:
    from service.inference.runtime import RuntimeOptions
    from service.registry import ModelRegistry

    registry = ModelRegistry(store=store, device="cpu", runtime=RuntimeOptions())
    registry.discover()
    registry.load_all()
    return registry


def faithfulness(store: Path) -> dict[str, Any]:
    """Occlusion numbers per method on the demo image model, and completeness errors on rows and texts."""
    from service.explain.core import Method
    from service.explain.faithfulness import occlusion
    from service.explain.images import ImageExplainer
    from service.explain.rows import RowExplainer
    from service.explain.texts import TextExplainer
    from service.inference.images import UploadedImage

    registry = _registry(store)
    out: dict[str, Any] = {}
    _, vision = registry.ready(VISION_MODEL)
    uploads = [UploadedImage(f"{i}.jpg", data) for i, data in enumerate(cifar_jpegs(IMAGES))]
    explainer = ImageExplainer(vision, name=VISION_MODEL)
    for method in Method:
        started = time.perf_counter()
        result = occlusion(explainer, vision.prepare(uploads), method=method)
        out[f"occlusion_{method.value}"] = {
            "images": result.n,
            "fraction": result.fraction,
            "top_drop": result.top_drop,
            "random_drop": result.random_drop,
            "seconds_per_image": (time.perf_counter() - started) / result.n,
        }
    _, tabular = registry.ready(TABULAR_MODEL)
    rows = adult_rows(ROWS)
    explained = RowExplainer(tabular, name=TABULAR_MODEL).explain(
        tabular.prepare(rows, strict=False), target=None, method=Method.INTEGRATED_GRADIENTS
    )
    out["completeness_rows"] = _errors([item.error for item in explained.items])
    _, text = registry.ready(TEXT_MODEL)
    explained = TextExplainer(text, name=TEXT_MODEL).explain(
        text.prepare(review_sentences(TEXTS)), target=None, method=Method.INTEGRATED_GRADIENTS
    )
    out["completeness_texts"] = _errors([item.error for item in explained.items])
    return out


def _errors(errors: list[float]) -> dict[str, float]:
    return {"n": len(errors), "mean": float(np.mean(errors)), "max": float(np.max(errors))}


def under_explain_load(store: Path, seconds: float) -> dict[str, Any]:
    """Predict p50/p99 at one client alone, then beside a client explaining back to back; one server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    image = cifar_jpegs(1)[0]
    files = [("files", ("cat.jpg", image, "image/jpeg"))]
    predict = Request("explain-load-predict", f"/api/v1/vision/{VISION_MODEL}/predict", files=files)
    server = start_ours(port, server_env(store))
    try:
        for _ in range(20):
            httpx.post(base + predict.path, files=files, timeout=30)
        httpx.post(f"{base}/api/v1/vision/{VISION_MODEL}/explain", files=files, timeout=60)
        alone = drive(base, predict, 1, seconds)
        stop = threading.Event()
        explained = {"n": 0, "errors": 0}

        def explain_loop() -> None:
            path = f"{base}/api/v1/vision/{VISION_MODEL}/explain?method=integrated_gradients"
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    status = client.post(path, files=files).status_code
                    explained["n" if status == 200 else "errors"] += 1

        loader = threading.Thread(target=explain_loop, daemon=True)
        loader.start()
        time.sleep(1.0)
        began = time.perf_counter()
        loaded = drive(base, predict, 1, seconds)
        elapsed = time.perf_counter() - began
        stop.set()
        loader.join(60)
    finally:
        stop_process(server)
    return {
        "predict_alone": alone,
        "predict_under_explain_load": loaded,
        "explains_per_s": explained["n"] / max(elapsed, 1e-9),
        "explain_errors": explained["errors"],
        "p50_ratio": loaded["p50_ms"] / alone["p50_ms"],
    }


def run(store: Path, seconds: float) -> dict[str, Any]:
    return {**faithfulness(store), "load": under_explain_load(store, seconds)}


def lines(result: dict[str, Any]) -> list[str]:
    out = ["explanations (bench/explain_bench.py):"]
    for key in ("occlusion_gradcam", "occlusion_integrated_gradients"):
        r = result[key]
        out.append(
            f"  {key}: top {r['fraction']:.0%} by the map → mean drop {r['top_drop']:.3f}, random → "
            f"{r['random_drop']:.3f} ({r['images']} images, {r['seconds_per_image'] * 1e3:.0f} ms each)"
        )
    for key in ("completeness_rows", "completeness_texts"):
        r = result[key]
        out.append(f"  {key}: |base + sum - output| mean {r['mean']:.2e}, max {r['max']:.2e} over {r['n']}")
    load = result["load"]
    out.append(
        f"  predict p50 alone {load['predict_alone']['p50_ms']:.1f} ms, beside explanations "
        f"{load['predict_under_explain_load']['p50_ms']:.1f} ms: ×{load['p50_ratio']:.2f} "
        f"({load['explains_per_s']:.1f} explanations/s)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.explain_bench", description=__doc__)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = run(args.store.resolve(), args.seconds)
    print("\n".join(lines(result)))
    CACHE.mkdir(exist_ok=True)
    (CACHE / "explain_results.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

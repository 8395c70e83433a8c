"""The peer: BentoML with adaptive batching around fastai's batch path, on the demo models' files."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from bench import CACHE, ROOT
from bench.cases import DEMO_TABULAR, DEMO_VISION
from bench.load import drive, one_item
from bench.servers import free_port, server_env, start_ours, start_process, stop_process

PEER_VENV = CACHE / "venv-bentoml"
PEER_SERVICE = "bentoml_service:FastaiPeer"  # bench/peers/bentoml_service.py
# The aims against it: throughput at 32 clients, p50 latency at one client. 32 clients first: BentoML
# sizes its batching wait from recent batches' waits (refit every 5 s, 5% less each time); fresh from start-up
# its training batches have taught it to hold a lone client ~0.5 s, after a busy spell it holds it tens of ms.
PEER_AIMS = {("vision", 32): 3.0, ("vision", 1): 2.0, ("tabular", 32): 3.0, ("tabular", 1): 5.0}
PARITY_ITEMS = 8
PARITY_TOLERANCE = 1e-4


def peer(seconds: float, venv: Path, *, store: Path) -> dict[str, Any]:
    """Our server, then BentoML (bench/peers/bentoml_service.py), on the same model files: the same
    predictions first (labels equal, probabilities within 1e-4, or no timing at all), then the same wrk rows."""
    env = server_env(store)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    bentoml_cmd = [str(venv / "bin" / "bentoml"), "serve", PEER_SERVICE, "--host", "127.0.0.1", "--port"]
    requests = {case.key: one_item(case) for case in (DEMO_TABULAR, DEMO_VISION)}
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
                drive(base, requests[kind], clients, seconds)
                runs[label][f"{kind}_c{clients}"] = drive(base, requests[kind], clients, seconds)
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
    """Answered requests per second: errors (BentoML's shed requests) left out."""
    return run["requests_per_s"] * (run["requests"] - run["errors"]) / max(run["requests"], 1)


def parity_answers(base: str) -> list[tuple[str, dict[str, float]]]:
    """(label, probabilities) for PARITY_ITEMS images and rows, each kind in one request."""
    images = [
        ("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(DEMO_VISION.images(PARITY_ITEMS))
    ]
    out = []
    for r in (
        httpx.post(f"{base}/api/v1/vision/{DEMO_VISION.model}/predict", files=images, timeout=60),
        httpx.post(
            f"{base}/api/v1/tabular/{DEMO_TABULAR.model}/predict",
            json={"rows": DEMO_TABULAR.rows(PARITY_ITEMS)},
            timeout=60,
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

"""Load generators: one request repeated by many clients, through wrk when installed, else httpx."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from bench import CACHE
from bench.cases import Case, CollabCase, TabularCase, TextCase

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Request:
    """One request a load step repeats; `name` is its part of the row keys and of wrk's file names."""

    name: str
    path: str
    json: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    content: bytes | None = None  # sent as it is, with `headers`
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"  # or "GET" (no body: the query string is in `path`)

    def httpx_kwargs(self) -> dict[str, Any]:
        """What httpx's request takes beside the method and path (it encodes the JSON or the form each time)."""
        if self.method == "GET":
            return {"headers": self.headers}
        if self.json is not None:
            return {"json": self.json, "headers": self.headers}
        if self.files is not None:
            return {"files": self.files, "headers": self.headers}
        return {"content": self.content, "headers": self.headers}

    def wrk_body(self) -> tuple[bytes, str, dict[str, str]]:
        """(body, content type, other headers) for wrk, which sends the same bytes every time."""
        if self.json is not None:
            return json.dumps(self.json).encode(), "application/json", dict(self.headers)
        if self.files is not None:
            name, content, mime = self.files[0][1]
            boundary = "fastaiservebench"
            body = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                f"Content-Type: {mime}\r\n\r\n".encode()
                + content
                + f"\r\n--{boundary}--\r\n".encode()
            )
            return body, f"multipart/form-data; boundary={boundary}", dict(self.headers)
        extra = dict(self.headers)
        assert self.content is not None
        return self.content, extra.pop("Content-Type"), extra


def one_item(case: Case) -> Request:
    """The one-row or one-image /api/v1 request every HTTP row of `case` sends."""
    if isinstance(case, TabularCase):
        return Request(case.key, f"/api/v1/tabular/{case.model}/predict", json={"rows": case.rows(1)})
    if isinstance(case, TextCase):
        return Request(case.key, f"/api/v1/text/{case.model}/predict", json={"texts": case.texts(1)})
    if isinstance(case, CollabCase):
        return Request(case.key, f"/api/v1/collab/{case.model}/predict", json={"pairs": case.pairs(1)})
    suffix = case.image_type.split("/")[-1].replace("jpeg", "jpg")
    files = [("files", (f"image.{suffix}", case.images(1)[0], case.image_type))]
    return Request(case.key, f"/api/v1/vision/{case.model}/predict", files=files)


def one_item_v2(case: Case, v1: Request) -> Request:
    """The same item over the Open Inference Protocol, as tritonclient sends it (binary tensors)."""

    def text(value: Any) -> bytes:
        # A category that is an amount (the demo's capital gain/loss) is sent as its text: "2174".
        raw = str(int(value) if isinstance(value, float) and value.is_integer() else value).encode()
        return len(raw).to_bytes(4, "little") + raw

    if isinstance(case, TabularCase):
        assert v1.json is not None
        [row] = v1.json["rows"]
        inputs = [
            (k, "FP64", np.array([v], "<f8").tobytes()) if k in case.numbers else (k, "BYTES", text(v))
            for k, v in row.items()
        ]
    elif isinstance(case, TextCase):
        assert v1.json is not None
        inputs = [("text", "BYTES", text(v1.json["texts"][0]))]
    elif isinstance(case, CollabCase):
        assert v1.json is not None
        [pair] = v1.json["pairs"]
        inputs = [("user", "BYTES", text(pair["user"])), ("item", "BYTES", text(pair["item"]))]
    else:
        assert v1.files is not None
        _, content, _ = v1.files[0][1]
        inputs = [("image", "BYTES", len(content).to_bytes(4, "little") + content)]
    body, headers = v2_binary_body(inputs)
    return Request(f"v2_{case.key}", f"/v2/models/{case.model}/infer", content=body, headers=headers)


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


def step_summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, float]:
    """One load step's row from its requests' latencies (seconds): throughput, p50, p99, errors."""
    lat = np.array(latencies)
    return {
        "requests_per_s": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "errors": errors,
        "requests": len(lat),
    }


def wrk_script(request: Request) -> str:
    """wrk's Lua set-up for `request`: the method, and for a POST its body (from a file) and headers."""
    if request.method == "GET":
        return 'wrk.method = "GET"\n' + "".join(
            f'wrk.headers["{k}"] = "{v}"\n' for k, v in request.headers.items()
        )
    body, ctype, extra = request.wrk_body()
    body_file = CACHE / f"bench-{request.name}.body"
    body_file.write_bytes(body)
    return (
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{ctype}"\n'
        + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in extra.items())
    )


def drive(base: str, request: Request, clients: int, seconds: float) -> dict[str, float]:
    """One load step: wrk when installed, else the httpx generator."""
    if shutil.which("wrk"):
        return load_wrk(base, request, clients, seconds)
    return asyncio.run(load_httpx(base, request, clients, seconds))


async def load_httpx(base: str, request: Request, clients: int, seconds: float) -> dict[str, float]:
    """`clients` connections posting `request` back to back for `seconds`."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    kwargs = request.httpx_kwargs()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    r = await client.request(request.method, request.path, **kwargs)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return step_summary(latencies, elapsed, errors)


def load_wrk(base: str, request: Request, clients: int, seconds: float) -> dict[str, float]:
    """The same load with wrk (C, event-driven): the generator takes far less of the 2 cores than Python."""
    script = CACHE / f"bench-{request.name}.lua"
    script.write_text(wrk_script(request))
    cmd = [
        "wrk",
        f"-t{min(2, clients)}",
        f"-c{clients}",
        f"-d{int(seconds)}s",
        "--latency",
        "-s",
        str(script),
        base + request.path,
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

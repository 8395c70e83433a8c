"""Browser tests: the real server (uvicorn, tiny real learners) on a free loopback port, driven by
Playwright in Debian's chromium (/usr/bin/chromium; `make install` installs it, no browser download).
One server, static server and browser serve every module of this package; a second server, asking for an
API key on its model routes (with its own static server), serves the key prompt's tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import TABULAR, UVICORN_APP, VISION, clone_store, free_port
from tests.tiny import TASK_MODELS
from tests.tiny_collab import COLLAB_MODELS
from tests.tiny_segmentation import SEGMENTATION
from tests.tiny_text import TEXT_MODELS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("FASTAI_SERVE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BROKEN = "broken"  # a model that fails to load, so the list shows a reason
BARE = "adult-bare"  # only an exported learner: never has a report
SERVER_START_S = 300  # every kind's tiny learners load (and pass their ONNX parity checks) first
# The keyed server's PREDICT_API_KEYS: every model call needs one of them.
API_KEYS = ("first-key-4c1d", "second-key-9e27")
# Chromium logs every 4xx response as a console error; these statuses are answers the pages expect and
# show (a missing API key, a model without a report, no share endpoint, a refused file), not page faults.
EXPECTED_HTTP_NOISE = ("status of 401", "status of 404", "status of 415", "status of 422")


@pytest.fixture(scope="session")
def frontend_store(
    trained_store: Path,
    task_store: Path,
    seg_store: Path,
    collab_store: Path,
    text_store: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The two classifiers, a tiny learner of every other task (tests/tiny.py) and kind
    (tests/tiny_segmentation.py, tests/tiny_collab.py, tests/tiny_text.py), a broken and a bare model."""
    store = clone_store(trained_store, tmp_path_factory.mktemp("frontend") / "store", [TABULAR, VISION])
    clone_store(task_store, store, TASK_MODELS)
    clone_store(seg_store, store, [SEGMENTATION])
    clone_store(collab_store, store, COLLAB_MODELS)
    clone_store(text_store, store, TEXT_MODELS)
    (store / BROKEN).mkdir()
    (store / BROKEN / "model.pkl").write_bytes(b"this is not a pickle")
    (store / BARE).mkdir()
    os.link(trained_store / TABULAR / "model.pkl", store / BARE / "model.pkl")
    return store


@pytest.fixture(scope="package")
def static_port() -> int:
    """The port of a plain static server for the frontend, known before the API starts (for CORS)."""
    return free_port()


@contextmanager
def running_server(store: Path, log_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """The real service under uvicorn on a free loopback port over `store`, frontend at `/`, with the
    settings of `env` besides; its base URL once every model has loaded (or failed)."""
    port = free_port()
    log_path = log_dir / "server.log"
    env = {
        **os.environ,
        "FASTAI_SERVE_MODEL_STORE": str(store),
        "FASTAI_SERVE_DEVICE": "cpu",
        "FASTAI_SERVE_FRONTEND_DIR": str(ROOT / "frontend"),
        "FASTAI_SERVE_TORCH_THREADS": "1",
        **env,
    }
    cmd = [*UVICORN_APP, "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not become ready:\n{log_path.read_text()[-3000:]}")
            try:
                states = httpx.get(f"{base}/health/ready", timeout=5).json().get("models", {})
                if states and "loading" not in states.values():
                    break
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.5)
        yield base
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="package")
def live_server(
    frontend_store: Path, tmp_path_factory: pytest.TempPathFactory, static_port: int
) -> Iterator[str]:
    """The real service under uvicorn on a free loopback port, frontend at `/`."""
    cors = {"FASTAI_SERVE_CORS_ORIGINS": f"http://127.0.0.1:{static_port}"}
    with running_server(frontend_store, tmp_path_factory.mktemp("server"), cors) as base:
        yield base


@pytest.fixture(scope="package")
def keyed_static_port() -> int:
    """The port of the keyed server's own static frontend (its CORS origin)."""
    return free_port()


@pytest.fixture(scope="package")
def keyed_server(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory, keyed_static_port: int
) -> Iterator[str]:
    """The service with PREDICT_API_KEYS set (the two classifiers only): model calls need a key."""
    store = clone_store(trained_store, tmp_path_factory.mktemp("keyed") / "store", [TABULAR, VISION])
    env = {
        "FASTAI_SERVE_PREDICT_API_KEYS": ",".join(API_KEYS),
        "FASTAI_SERVE_CORS_ORIGINS": f"http://127.0.0.1:{keyed_static_port}",
    }
    with running_server(store, tmp_path_factory.mktemp("keyed-server"), env) as base:
        yield base


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_server(api_base: str, port: int, folder: Path) -> Iterator[str]:
    """A copy of the frontend folder under `folder` on a plain static server on `port`, its config.js
    pointing at the API at `api_base`."""
    root = folder / "frontend"
    shutil.copytree(ROOT / "frontend", root)
    (root / "config.js").write_text(f'window.FASTAI_SERVE_CONFIG = {{ apiBase: "{api_base}" }};\n')
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="package")
def static_frontend(
    live_server: str, static_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The frontend folder on a plain static server of its own, its config.js pointing at the API."""
    with static_server(live_server, static_port, tmp_path_factory.mktemp("static")) as base:
        yield base


@pytest.fixture(scope="package")
def keyed_static_frontend(
    keyed_server: str, keyed_static_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The frontend on a static server of its own, pointing at the keyed server (another origin)."""
    with static_server(keyed_server, keyed_static_port, tmp_path_factory.mktemp("keyed-static")) as base:
        yield base


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: `make install` installs Debian's chromium (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageLog:
    """What a page said on its console, its uncaught errors, and every URL it asked for."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def unexpected_errors(self) -> list[str]:
        noise = [e for e in self.console_errors if not any(s in e for s in EXPECTED_HTTP_NOISE)]
        return noise + self.page_errors


# Counts live object URLs, so tests can see that replaced thumbnails were revoked.
TRACK_OBJECT_URLS = """
window.__liveObjectUrls = new Set();
const create = URL.createObjectURL.bind(URL), revoke = URL.revokeObjectURL.bind(URL);
URL.createObjectURL = (o) => { const u = create(o); window.__liveObjectUrls.add(u); return u; };
URL.revokeObjectURL = (u) => { window.__liveObjectUrls.delete(u); revoke(u); };
"""


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@contextmanager
def opened_page(
    browser: Any, base_url: str, page_log: PageLog, viewport: dict[str, int] | None, tmp_path: Path
) -> Iterator[Any]:
    """A fresh page (desktop-sized unless `viewport` says otherwise) in a context of its own on `base_url`;
    a screenshot is saved when it closes."""
    viewport = viewport or {"width": 1280, "height": 900}
    context = browser.new_context(base_url=base_url, viewport=viewport, accept_downloads=True)
    context.set_default_timeout(30_000)
    context.add_init_script(TRACK_OBJECT_URLS)
    pg = context.new_page()
    pg.on("console", lambda m: page_log.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: page_log.page_errors.append(str(e)))
    pg.on("request", lambda r: page_log.requests.append(r.url))
    yield pg
    try:
        pg.screenshot(path=str(tmp_path / "final.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture
def page(
    browser: Any, live_server: str, page_log: PageLog, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Any]:
    """A fresh desktop-sized page on the live server; a screenshot is saved when the test ends."""
    with opened_page(browser, live_server, page_log, getattr(request, "param", None), tmp_path) as pg:
        yield pg


@pytest.fixture
def keyed_page(
    browser: Any, keyed_server: str, page_log: PageLog, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Any]:
    """A fresh page on the server that asks for an API key (a new context: an empty sessionStorage)."""
    with opened_page(browser, keyed_server, page_log, getattr(request, "param", None), tmp_path) as pg:
        yield pg


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, screenshot the page as it is and name the file in the report."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    pg = funcargs.get("page") or funcargs.get("keyed_page")
    if report.when == "call" and report.failed and pg is not None:
        tmp = funcargs.get("tmp_path")
        path = Path(tmp if tmp else ".") / "failure.png"
        try:
            pg.screenshot(path=str(path), full_page=True)
            report.sections.append(("screenshot", f"page at failure: {path} ({pg.url})"))
            log = funcargs.get("page_log")
            if isinstance(log, PageLog) and (log.console_errors or log.page_errors):
                report.sections.append(("browser console", "\n".join(log.console_errors + log.page_errors)))
        except Exception as exc:  # a crashed page must not hide the test's own failure
            report.sections.append(("screenshot", f"no screenshot: {exc}"))
    return report

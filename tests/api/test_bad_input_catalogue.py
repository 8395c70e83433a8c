"""A catalogue of bad inputs, one case per line: the exact status and the problem+json it must give.

Each case says what it sends and what must come back: the status, a fragment of `detail` (taken from
`service.errors` where the message lives there) and/or an `errors[].loc`. It stands on its own: the app is
started here with known limits (50 rows, 4 files, 1 MB bodies, 1 MB / 40-file archives). A few requests
cannot be sent through httpx as written (a lying Content-Length, a `..` path segment that httpx would
normalise away): those go to the ASGI app directly, as a server would pass them on.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from starlette.types import Message

from service.api.app import create_app
from service.api.problems import PROBLEM_MEDIA_TYPE
from service.errors import (
    MSG_ARCHIVE_NO_CLASS_FOLDERS,
    MSG_ARCHIVE_NOT_ZIP,
    MSG_ARCHIVE_TOO_LARGE,
    MSG_ARCHIVE_TOO_MANY,
    MSG_ARCHIVE_UNSAFE_PATH,
    MSG_BODY_TOO_LARGE,
    MSG_CSV_EMPTY,
    MSG_CSV_MEDIA,
    MSG_CSV_MISSING_COLUMNS,
    MSG_EVAL_NOTHING,
    MSG_INVALID_ROWS,
    MSG_JSON_MEDIA,
    MSG_MODEL_NOT_FOUND,
    MSG_NO_ARTIFACT,
    MSG_NOT_AN_IMAGE,
    MSG_REQUEST_INVALID,
    MSG_TOO_MANY_FILES,
    MSG_TOO_MANY_ROWS,
    MSG_WRONG_KIND_PATH,
)
from tests.helpers import TABULAR, VISION, adult_rows, image_bytes, make_settings, started_client

PREDICT = f"/api/v1/tabular/{TABULAR}/predict"
PREDICT_CSV = f"/api/v1/tabular/{TABULAR}/predict/csv"
VPREDICT = f"/api/v1/vision/{VISION}/predict"
VEVAL = f"/api/v1/vision/{VISION}/evaluate"
LIMITS: dict[str, Any] = {
    "max_rows": 50,
    "max_files": 4,
    "max_upload_mb": 1.0,
    "max_archive_mb": 1.0,
    "max_eval_files": 40,
}
BODY_LIMIT = MSG_BODY_TOO_LARGE.format(limit_mb=LIMITS["max_upload_mb"])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    seconds: float = 0.0


@dataclass
class Ctx:
    client: httpx.AsyncClient
    app: FastAPI
    rows: list[dict[str, Any]]

    async def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        response = await self.client.request(method, path, **kwargs)
        return Reply(response.status_code, dict(response.headers), _json(response.content))

    async def raw(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> Reply:
        """Straight to the ASGI app: headers and path exactly as given, no client-side fixing up."""
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),  # decoded, as uvicorn passes it on
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"test"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
        }
        sent = False
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        headers_out = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
        return Reply(start["status"], headers_out, _json(b"".join(chunks)))


def _json(content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        return {"_raw": content[:200].decode("latin-1")}
    return body if isinstance(body, dict) else {"_raw": body}


@dataclass(frozen=True)
class Bad:
    """One bad request and the problem it must give: `status` (or one of several), fragment(s) of `detail`,
    and `loc`, one of `errors[].loc`."""

    id: str
    send: Callable[[Ctx], Awaitable[Reply]]
    status: int | tuple[int, ...]
    detail: str | tuple[str, ...] | None = None
    loc: list[str | int] | None = None
    marks: tuple[Any, ...] = field(default_factory=tuple)


# --- builders ------------------------------------------------------------------------------------------


def _rows_with(change: Callable[[list[dict[str, Any]]], None]) -> Callable[[Ctx], Awaitable[Reply]]:
    async def send(ctx: Ctx) -> Reply:
        rows = copy.deepcopy(ctx.rows)
        change(rows)
        return await ctx.request("POST", PREDICT, json={"rows": rows})

    return send


def _raw_json(template: str) -> Callable[[Ctx], Awaitable[Reply]]:
    """JSON text sent as is, `{row}` replaced by a valid row's fields: for tokens json.dumps won't write."""

    async def send(ctx: Ctx) -> Reply:
        body = template.replace("{row}", json.dumps(ctx.rows[0])[1:-1])
        return await ctx.request("POST", PREDICT, content=body, headers={"content-type": "application/json"})

    return send


def _csv(
    data: bytes | Callable[[Ctx], bytes], filename: str = "rows.csv"
) -> Callable[[Ctx], Awaitable[Reply]]:
    async def send(ctx: Ctx) -> Reply:
        content = data(ctx) if callable(data) else data
        return await ctx.request("POST", PREDICT_CSV, files={"file": (filename, content, "text/csv")})

    return send


def _images(*items: tuple[str, bytes], path: str = VPREDICT) -> Callable[[Ctx], Awaitable[Reply]]:
    async def send(ctx: Ctx) -> Reply:
        files = [("files", (name, data, "application/octet-stream")) for name, data in items]
        return await ctx.request("POST", path, files=files)

    return send


def _archive(members: dict[str, bytes], filename: str = "labelled.zip") -> Callable[[Ctx], Awaitable[Reply]]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return _archive_bytes(buf.getvalue(), filename)


def _archive_bytes(data: bytes, filename: str = "labelled.zip") -> Callable[[Ctx], Awaitable[Reply]]:
    async def send(ctx: Ctx) -> Reply:
        return await ctx.request("POST", VEVAL, files={"archive": (filename, data, "application/zip")})

    return send


def _call(method: str, path: str, **kwargs: Any) -> Callable[[Ctx], Awaitable[Reply]]:
    async def send(ctx: Ctx) -> Reply:
        return await ctx.request(method, path, **kwargs)

    return send


def _raw(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> Callable[[Ctx], Awaitable[Reply]]:
    async def send(ctx: Ctx) -> Reply:
        return await ctx.raw(method, path, headers, body)

    return send


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid little PNG whose header declares width x height pixels (900 M at the default)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 1024)  # a sliver of a first row; decoding needs far more than this
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _drop(column: str) -> Callable[[list[dict[str, Any]]], None]:
    return lambda rows: rows[0].pop(column)


def _set(column: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    return lambda rows: rows[0].__setitem__(column, value)


def _header_csv(ctx: Ctx, drop: tuple[str, ...] = ()) -> bytes:
    frame = pd.DataFrame(ctx.rows).drop(columns=list(drop))
    return frame.to_csv(index=False).encode()


PNG = image_bytes(seed=7)
JPEG = image_bytes(seed=7, fmt="JPEG", size=(64, 64))
BIG_PNG_NAME = "big.png"
ONE_ROW_INVALID = MSG_INVALID_ROWS.format(count=1)
ONE_PROBLEM = MSG_REQUEST_INVALID.format(count=1)
CSV_MEDIA = MSG_CSV_MEDIA.format(filename="rows.csv")

CASES: list[Bad] = [
    # --- tabular JSON ----------------------------------------------------------------------------------
    Bad("json-missing-column", _rows_with(_drop("age")), 422, ONE_ROW_INVALID, ["rows", 0, "age"]),
    Bad(
        "json-extra-column", _rows_with(_set("shoe_size", 44)), 422, ONE_ROW_INVALID, ["rows", 0, "shoe_size"]
    ),
    Bad(
        "json-ill-typed-number",
        _rows_with(_set("hours-per-week", "forty")),
        422,
        ONE_ROW_INVALID,
        ["rows", 0, "hours-per-week"],
    ),
    Bad(
        "json-bool-for-number",
        _rows_with(_set("capital-gain", True)),
        422,
        ONE_ROW_INVALID,
        ["rows", 0, "capital-gain"],
    ),
    Bad(
        "json-list-for-category",
        _rows_with(_set("workclass", ["Private"])),
        422,
        "problem(s) in the submitted rows",  # one per type the column accepts
        ["rows", 0, "workclass", "str"],
    ),
    Bad(
        "json-nan-token",
        _raw_json('{"rows": [{{row}, "fnlwgt": NaN}]}'),
        422,
        ONE_ROW_INVALID,
        ["rows", 0, "fnlwgt"],
    ),
    Bad(
        "json-infinity-token",
        _raw_json('{"rows": [{{row}, "hours-per-week": Infinity}]}'),
        422,
        ONE_ROW_INVALID,
        ["rows", 0, "hours-per-week"],
    ),
    Bad(
        "json-huge-number",
        _raw_json('{"rows": [{{row}, "fnlwgt": 1e400}]}'),
        422,
        ONE_ROW_INVALID,
        ["rows", 0, "fnlwgt"],
    ),
    Bad("json-empty-rows", _raw_json('{"rows": []}'), 422, ONE_PROBLEM, ["body", "rows"]),
    Bad("json-no-rows-key", _raw_json('{"data": [{{row}}]}'), 422, ONE_PROBLEM, ["body", "rows"]),
    Bad("json-row-not-an-object", _raw_json('{"rows": [1]}'), 422, ONE_PROBLEM, ["body", "rows", 0]),
    Bad("json-body-not-an-object", _raw_json("[{{row}}]"), 422, ONE_PROBLEM, ["body"]),
    Bad("json-malformed", _raw_json('{"rows": [{{row}'), 422, ONE_PROBLEM),
    Bad(
        "json-too-many-rows",
        _rows_with(lambda rows: rows.extend([rows[0]] * (51 - len(rows)))),
        413,
        MSG_TOO_MANY_ROWS.format(count=51, limit=50),
    ),
    Bad(
        "json-sent-as-text",
        _call("POST", PREDICT, content=b'{"rows": [{}]}', headers={"content-type": "text/plain"}),
        415,
        MSG_JSON_MEDIA.format(media="text/plain"),
    ),
    Bad(
        "json-sent-as-form",  # what `curl -d` does without -H 'Content-Type: application/json'
        _call("POST", PREDICT, data={"rows": "[]"}),
        415,
        MSG_JSON_MEDIA.format(media="application/x-www-form-urlencoded"),
    ),
    # --- tabular CSV -----------------------------------------------------------------------------------
    Bad("csv-binary", _csv(b"age,sex\x00\x01\x02\n39,Male\n"), 415, CSV_MEDIA),
    Bad("csv-not-utf8", _csv(b"age,native-country\n39,M\xe1laga\n"), 415, CSV_MEDIA),
    Bad("csv-is-a-png", _csv(PNG), 415, CSV_MEDIA),
    Bad("csv-ragged-rows", _csv(b"age,sex\n39,Male\n40,Female,extra,cells\n"), 400, "is not a readable CSV"),
    Bad("csv-empty-file", _csv(b""), 400, "'rows.csv' is not a readable CSV"),
    Bad("csv-header-only", _csv(b"age,sex\n"), 422, MSG_CSV_EMPTY.format(filename="rows.csv")),
    Bad(
        "csv-missing-columns",
        _csv(lambda ctx: _header_csv(ctx, drop=("age", "sex"))),
        422,
        MSG_CSV_MISSING_COLUMNS.format(filename="rows.csv", columns="age, sex"),
        ["file", "age"],
    ),
    Bad(
        "csv-no-file-field",
        _call("POST", PREDICT_CSV, files={"upload": ("rows.csv", b"age\n39\n", "text/csv")}),
        422,
        ONE_PROBLEM,
        ["body", "file"],
    ),
    Bad(
        "csv-over-body-limit",
        _csv(b"age,sex\n" + b"39,Male\n" * 140_000),
        413,
        BODY_LIMIT,
    ),
    # --- images ----------------------------------------------------------------------------------------
    Bad(
        "image-text-file",
        _images(("notes.png", b"hello, I am text")),
        415,
        MSG_NOT_AN_IMAGE.format(filename="notes.png"),
    ),
    Bad("image-zero-bytes", _images(("empty.jpg", b"")), 415, MSG_NOT_AN_IMAGE.format(filename="empty.jpg")),
    Bad(
        "image-truncated-jpeg",
        _images(("cut.jpg", JPEG[:200])),
        422,
        "file 'cut.jpg' looks like JPEG but cannot be decoded",
        ["files", "cut.jpg"],
    ),
    Bad(
        "image-one-bad-among-good",
        _images(("a.png", PNG), ("b.exe", b"MZ\x90\x00" + b"\x00" * 60), ("c.jpg", JPEG)),
        415,
        MSG_NOT_AN_IMAGE.format(filename="b.exe"),
    ),
    Bad(
        "image-too-many-files",
        _images(*[(f"{i}.png", PNG) for i in range(5)]),
        413,
        MSG_TOO_MANY_FILES.format(count=5, limit=4),
    ),
    Bad("image-body-too-large", _images((BIG_PNG_NAME, PNG + b"\x00" * (1024 * 1024))), 413, BODY_LIMIT),
    Bad(
        "image-no-files-field",
        _call("POST", VPREDICT, data={"top_k": "3"}),
        422,
        ONE_PROBLEM,
        ["body", "files"],
    ),
    Bad(
        "image-top-k-zero",
        _call("POST", VPREDICT, params={"top_k": 0}, files={"files": ("a.png", PNG, "image/png")}),
        422,
        ONE_PROBLEM,
        ["query", "top_k"],
    ),
    Bad(
        "image-decompression-bomb",
        _images(("bomb.png", _png_bomb())),
        413,
        ("bomb.png", "pixels"),
    ),
    # --- evaluation archives ---------------------------------------------------------------------------
    Bad(
        "archive-zip-slip",
        _archive({"cat/ok.png": PNG, "../../etc/cat/evil.png": PNG}),
        422,
        MSG_ARCHIVE_UNSAFE_PATH.format(path="../../etc/cat/evil.png"),
        ["archive", "../../etc/cat/evil.png"],
    ),
    Bad(
        "archive-absolute-path",
        _archive({"/tmp/cat/evil.png": PNG}),
        422,
        MSG_ARCHIVE_UNSAFE_PATH.format(path="/tmp/cat/evil.png"),
    ),
    Bad(
        "archive-no-class-folders",
        _archive({"a.png": PNG, "b.png": PNG}),
        422,
        MSG_ARCHIVE_NO_CLASS_FOLDERS.format(filename="labelled.zip"),
    ),
    Bad(
        "archive-unpacks-too-large",
        _archive({"cat/huge.png": PNG + b"\x00" * (2 * 1024 * 1024)}),
        413,
        MSG_ARCHIVE_TOO_LARGE.format(limit_mb=1.0),
    ),
    Bad(
        "archive-too-many-files",
        _archive({f"cat/{i}.png": b"" for i in range(41)}),
        413,
        MSG_ARCHIVE_TOO_MANY.format(count=41, limit=40),
    ),
    Bad(
        "archive-not-a-zip",
        _archive_bytes(b"PK\x03\x04 not really"),
        400,
        MSG_ARCHIVE_NOT_ZIP.format(filename="labelled.zip"),
    ),
    Bad("evaluate-nothing-sent", _call("POST", VEVAL, data={"labels": "cat"}), 422, MSG_EVAL_NOTHING),
    # --- headers ---------------------------------------------------------------------------------------
    Bad(
        "header-absurd-content-length",
        _raw(
            "POST", PREDICT, [(b"content-type", b"application/json"), (b"content-length", b"9" * 30)], b"{}"
        ),
        413,
        BODY_LIMIT,
    ),
    Bad(
        "header-multipart-without-boundary",
        _raw("POST", VPREDICT, [(b"content-type", b"multipart/form-data")], b"--x\r\n\r\n--x--\r\n"),
        400,
        "boundary",
    ),
    # --- paths -----------------------------------------------------------------------------------------
    Bad(
        "path-unknown-model",
        _call("GET", "/api/v1/models/nope"),
        404,
        MSG_MODEL_NOT_FOUND.format(name="nope"),
    ),
    Bad(
        "path-wrong-kind",
        _call("POST", f"/api/v1/tabular/{VISION}/predict", json={"rows": [{}]}),
        404,
        MSG_WRONG_KIND_PATH.format(name=VISION, kind="vision", path=f"/api/v1/vision/{VISION}/predict"),
    ),
    Bad(
        "path-dot-dot-name", _raw("GET", "/api/v1/models/..", []), 404, MSG_MODEL_NOT_FOUND.format(name="..")
    ),
    Bad(
        "path-dot-dot-encoded",
        _raw("GET", "/api/v1/models/%2e%2e%2f%2e%2e%2fetc/schema", []),
        404,
        "Not Found",  # the decoded name holds '/', so no route matches at all
    ),
    Bad("path-very-long-name", _call("GET", "/api/v1/models/" + "a" * 4000), 404, "does not exist"),
    Bad(
        "path-unknown-artifact",
        _call("GET", f"/api/v1/models/{TABULAR}/report/passwd.png"),
        404,
        MSG_NO_ARTIFACT.format(name=TABULAR, artifact="passwd"),
    ),
    Bad("path-unknown-route", _call("GET", "/api/v1/no-such-thing"), 404, "Not Found"),
    Bad("path-wrong-method", _call("GET", PREDICT), 405, "Method Not Allowed"),
]


@pytest.fixture(scope="module")
async def ctx(trained_store: Path, adult_frame: pd.DataFrame) -> AsyncIterator[Ctx]:
    app = create_app(make_settings(trained_store, **LIMITS))
    async for client in started_client(app):
        yield Ctx(client=client, app=app, rows=adult_rows(adult_frame, 3))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
async def test_bad_input_gives_itsproblem(ctx: Ctx, case: Bad) -> None:
    start = time.perf_counter()
    reply = await case.send(ctx)
    seconds = time.perf_counter() - start
    statuses = case.status if isinstance(case.status, tuple) else (case.status,)
    assert reply.status in statuses, reply.body
    assert reply.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = reply.body
    assert body["status"] == reply.status and body["title"] and body["type"]
    assert "Traceback" not in json.dumps(body)
    fragments = (case.detail,) if isinstance(case.detail, str) else case.detail or ()
    for fragment in fragments:
        assert fragment in body["detail"]
    if case.loc is not None:
        assert case.loc in [error["loc"] for error in body.get("errors", [])], body.get("errors")
    if case.status == 405:
        assert reply.headers["allow"] == "POST"
    # A refusal is cheap: nothing here may be decoded, unpacked or predicted before it is refused.
    assert seconds < 5, f"{case.id} took {seconds:.1f} s"


def test_catalogue_ids_are_unique_and_many() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) >= 25


# Inputs that look wrong but are right: the type comes from the bytes, never from the name or header.
ACCEPTED = [
    pytest.param("photo.txt", image_bytes(fmt="PNG"), id="png-named-txt"),
    pytest.param("photo.png", image_bytes(fmt="JPEG"), id="jpeg-named-png"),
    pytest.param("anim.gif", image_bytes(fmt="GIF"), id="gif"),
    pytest.param("old.bmp", image_bytes(fmt="BMP"), id="bmp"),
    pytest.param("new.webp", image_bytes(fmt="WEBP"), id="webp"),
    pytest.param("scan.tiff", image_bytes(fmt="TIFF"), id="tiff"),
    pytest.param("noext", image_bytes(mode="L"), id="grey-no-extension"),
]


@pytest.mark.parametrize(("filename", "data"), ACCEPTED)
async def test_right_bytes_are_accepted_whatever_the_name(ctx: Ctx, filename: str, data: bytes) -> None:
    response = await ctx.client.post(VPREDICT, files={"files": (filename, data, "text/plain")})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["filename"] == filename

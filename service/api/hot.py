"""Hot routes: small predict requests served without FastAPI's per-request machinery, same answers.

Profiling a one-image request through uvicorn (py-spy, 32 clients) put over a third of the event loop's
GIL time in FastAPI itself: walking the included routers to match the path, solving the route's dependencies
and validating its parameters, and re-validating the returned schema; more than multipart parsing, the hops
to worker threads and our middleware together. A `HotRoute` sits first in the router in front of one
declared route (same path, POST, a body of at most `HOT_MAX_BYTES` with a Content-Length). It reads the body
and hands it to the kind's hot handler (`routes/vision.py`, `routes/tabular.py`), which serves the plain
case (the wire format and parameters the route declares, nothing else) through the same route function
core and answers the same schema as FastAPI would serialise it. Anything else (another content type, a
field the route does not take, a value out of range, a body that does not parse) goes to the declared
route with the body replayed, so every error is still the declared route's own; domain errors raised on the
hot path go through the same exception handlers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, compile_path, get_route_path
from starlette.types import Message, Receive, Scope, Send

# Bigger requests take the declared route: their parsing dwarfs FastAPI's share, and the hot path would hold
# the whole body in memory where the declared route spools large files to disk.
HOT_MAX_BYTES = 1024 * 1024
DECLARED = "fastai_serve.declared"  # scope key: this request goes to the declared route
_PLAIN_INT = re.compile(r"[1-9][0-9]{0,8}")
_PLAIN_FRACTION = re.compile(r"0?\.[0-9]{1,9}")

HotHandler = Callable[[Request, bytes], Awaitable[Response | None]]


@dataclass(frozen=True)
class Hot:
    """A hot handler and what of its declared route it reproduces: the query parameters it parses, the body
    fields it reads and the dependencies it calls (by function name). `install_hot_routes` refuses a
    declared route with anything more, so a parameter, a dependency or a limit added to a route cannot be
    skipped by its hot path unnoticed."""

    handler: HotHandler
    query: frozenset[str] = frozenset()
    body: frozenset[str] = frozenset()
    dependencies: frozenset[str] = frozenset()


def uncovered(declared: APIRoute, hot: Hot) -> list[str]:
    """What the declared route takes that the hot handler does not say it reproduces."""
    dependant = declared.dependant
    missing = [f"query {q.name!r}" for q in dependant.query_params if q.name not in hot.query]
    missing += [f"body {b.name!r}" for b in dependant.body_params if b.name not in hot.body]
    missing += [f"header {h.name!r}" for h in dependant.header_params]
    missing += [f"cookie {c.name!r}" for c in dependant.cookie_params]
    names = [getattr(d.call, "__name__", repr(d.call)) for d in dependant.dependencies]
    missing += [f"dependency {n}" for n in names if n not in hot.dependencies]
    return missing


class HotRoute(BaseRoute):
    """`declared`'s path and POST, served by `handler` when it answers, else by the declared route."""

    def __init__(self, declared: APIRoute, hot: Hot, *, router: Any) -> None:
        self.declared = declared
        self.handler = hot.handler
        self.router = router  # the app's router, to dispatch a request the handler declines
        self.path = self.path_format = declared.path
        self.path_regex, _, self.param_convertors = compile_path(declared.path)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST" or DECLARED in scope:
            return Match.NONE, {}
        match = self.path_regex.match(get_route_path(scope))
        if match is None or not _small_body(scope):
            return Match.NONE, {}
        params = {k: self.param_convertors[k].convert(v) for k, v in match.groupdict().items()}
        # The declared route as the route: the log line and the metrics name its path template.
        child = {"endpoint": self.declared.endpoint, "route": self.declared}
        return Match.FULL, {**child, "path_params": {**scope.get("path_params", {}), **params}}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        received: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":  # the client left: the declared route sees it too
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = None
        if received[-1]["type"] == "http.request":
            response = await self.handler(Request(scope, receive, send), b"".join(chunks))
        if response is not None:
            await response(scope, receive, send)
            return
        scope[DECLARED] = True
        replay = iter(received)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.router(scope, replayed, send)


def _small_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and int(value) <= HOT_MAX_BYTES
    return False


def install_hot_routes(app: FastAPI, modules: list[Any]) -> None:
    """A `HotRoute`, first in the app's router, for each route of each module's `HOT_ROUTES` (its full
    path, prefix included, to its `Hot`); call it after the modules' routers are included. Raises when a
    hot handler does not cover its declared route (`uncovered`)."""
    for module in modules:
        for path, hot in module.HOT_ROUTES.items():
            declared = next(
                r
                for r in module.router.routes
                if isinstance(r, APIRoute) and r.path == path and "POST" in (r.methods or ())
            )
            missing = uncovered(declared, hot)
            if missing:
                raise RuntimeError(f"the hot handler of POST {path} does not reproduce {', '.join(missing)}")
            app.router.routes.insert(0, HotRoute(declared, hot, router=app.router))


# What the hot handlers share: the plain case of each wire format, or None for the declared route. ------
def plain_query(
    request: Request, ints: dict[str, tuple[int, int]], *, fractions: frozenset[str] = frozenset()
) -> dict[str, float] | None:
    """The query's parameters when each is one of `ints` (plain digits within its bounds) or `fractions`
    (a plain decimal strictly between 0 and 1), given once; None for anything else (the declared route
    parses and answers it)."""
    if not request.scope["query_string"]:
        return {}
    items = request.query_params.multi_items()
    values: dict[str, float] = {}
    for name, text in items:
        if name in values:
            return None
        if name in fractions and _PLAIN_FRACTION.fullmatch(text) and 0 < float(text) < 1:
            values[name] = float(text)
            continue
        if name not in ints or not _PLAIN_INT.fullmatch(text):
            return None
        low, high = ints[name]
        values[name] = int(text)
        if not low <= values[name] <= high:
            return None
    return values


async def file_parts(
    request: Request, body: bytes, *, field: str, max_files: int
) -> tuple[list[UploadFile], Any] | None:
    """The uploaded files of a multipart body whose every part is a file named `field`, and the form (to
    close); None for any other body, for one that does not parse, or for more than `max_files` files."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        return None

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=max_files, max_fields=0).parse()
    except Exception:  # noqa: BLE001 - whatever it is, the declared route parses again and answers it
        return None
    items = form.multi_items()
    files = [value for name, value in items if name == field and isinstance(value, UploadFile)]
    if not files or len(files) != len(items):
        await form.close()
        return None
    return files, form


def is_json(request: Request) -> bool:
    """The body is declared as plain JSON (`require_json` and FastAPI's own JSON parsing both accept it)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def json_response(schema: BaseModel) -> Response:
    """`schema` serialised as FastAPI serialises a route's response model (pydantic's JSON, by alias)."""
    return Response(json_bytes(schema), media_type="application/json")


def json_bytes(schema: BaseModel) -> bytes:
    """The bytes FastAPI writes for `schema` as a route's response model."""
    return _adapter(type(schema)).dump_json(schema, by_alias=True)


@cache
def _adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(model)

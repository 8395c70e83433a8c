"""Property-based fuzzing of every operation in `/openapi.json` with schemathesis, over the real app and the
tiny learners: no 5xx, and every response documented (status code, media type, body schema, headers).

The operations are read from the app's own schema when the tests are collected, so an endpoint added later
(the admin reloads) is fuzzed without editing this file, and `test_fuzzed_operations_are_the_served_ones`
fails if the started app serves an operation the parametrization missed. The normal suite sends
`FAST_CASES` cases per operation; `make test-slow` sends `SLOW_CASES`. Cases are drawn from valid
(positive) and invalid (negative) data alike. Hypothesis stops early only when an operation has no input
at all (no parameters, no body): it is called once. The count sent is printed and asserted per operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app  # noqa: E402
from tests.helpers import clone_store, make_settings, served  # noqa: E402

FAST_CASES = 100
SLOW_CASES = 1000
API_KEY = "schemathesis-key"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _operations(spec: dict[str, Any]) -> dict[str, bool]:
    """Each operation's label ("POST /api/v1/...") and whether it takes any input."""
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {
        f"{method.upper()} {path}": bool(operation.get("parameters") or operation.get("requestBody"))
        for path, item in sorted(spec.get("paths", {}).items())
        for method, operation in item.items()
        if method in methods
    }


# The schema does not depend on the store, so an app that never starts is enough to list the operations.
TAKES_INPUT = _operations(create_app(make_settings(Path("unused-store"))).openapi())
OPERATIONS = sorted(TAKES_INPUT)


@pytest.fixture(scope="module")
def fuzz_schema(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real uvicorn on loopback over a private copy of the store (admin reloads may rescan it)."""
    store = clone_store(trained_store, tmp_path_factory.mktemp("fuzz") / "store")
    app = create_app(
        make_settings(store, api_key=API_KEY, ngrok_api_url="", max_rows=50, max_files=4, max_upload_mb=1.0)
    )
    with served(app) as address:
        yield schemathesis.openapi.from_url(f"http://{address}/openapi.json")


def _strategy(operation: Any) -> st.SearchStrategy[Any]:
    modes = [operation.as_strategy(GenerationMode.POSITIVE)]
    try:
        modes.append(operation.as_strategy(GenerationMode.NEGATIVE))
    except Exception:  # an operation with nothing to negate (no parameters, no body)
        pass
    return st.one_of(*modes)


def _fuzz(schema: Any, label: str, cases: int) -> None:
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served schema"
    sent = 0

    @settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        report_multiple_bugs=False,
    )
    @given(case=_strategy(operation))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        # The key goes with every call: admin operations are fuzzed behind the auth check, not stopped by it.
        case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)

    run()
    print(f"\n{label}: {sent} schemathesis cases")
    assert sent >= (cases if TAKES_INPUT[label] else 1)


def test_fuzzed_operations_are_the_served_ones(fuzz_schema: Any) -> None:
    assert sorted(_operations(fuzz_schema.raw_schema)) == OPERATIONS


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_is_documented_and_never_5xx(fuzz_schema: Any, label: str) -> None:
    _fuzz(fuzz_schema, label, FAST_CASES)


@pytest.mark.slow
@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_deeply(fuzz_schema: Any, label: str) -> None:
    _fuzz(fuzz_schema, label, SLOW_CASES)

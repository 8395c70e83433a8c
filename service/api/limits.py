"""Per-request count limits, checked right after parsing (the byte limit is `BodySizeLimitMiddleware`'s)."""

from __future__ import annotations

from service.errors import MSG_TOO_MANY_FILES, MSG_TOO_MANY_ROWS, PayloadTooLarge


def check_rows(count: int, limit: int) -> None:
    """413 when a request carries more rows than MAX_ROWS."""
    if count > limit:
        raise PayloadTooLarge(MSG_TOO_MANY_ROWS.format(count=count, limit=limit))


def check_files(count: int, limit: int) -> None:
    """413 when a request carries more files than MAX_FILES."""
    if count > limit:
        raise PayloadTooLarge(MSG_TOO_MANY_FILES.format(count=count, limit=limit))

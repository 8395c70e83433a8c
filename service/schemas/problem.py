"""RFC 9457 problem details, the body of every 4xx/5xx response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None

    @classmethod
    def responses(cls, *statuses: int) -> dict[int | str, dict[str, Any]]:
        """OpenAPI `responses=` entry documenting problem+json for the given statuses."""
        return {
            status: {
                "model": cls,
                "content": {"application/problem+json": {}},
                "description": "Problem details",
            }
            for status in statuses
        }

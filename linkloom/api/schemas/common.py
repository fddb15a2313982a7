"""Shared API shapes: the problem body and paginated lists."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable ``code``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://linkloom.dev/problems/run-not-found",
                    "title": "Not found",
                    "status": 404,
                    "detail": "Run 'r_123' not found; list runs with 'loom run list'.",
                    "code": "run_not_found",
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    code: str


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next (null at the end)."""

    items: list[T]
    next_cursor: str | None = Field(default=None, description="Cursor of the next page.")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    described = {
        401: "No valid token.",
        403: "The token's role is too low.",
        404: "The object does not exist.",
        409: "The object's state does not allow this.",
        422: "The request is invalid; `detail` names each problem.",
        503: "A dependency is unavailable; try again.",
    }
    return {
        status: {
            "model": Problem,
            "description": described.get(status, "Error."),
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }


AUTHED = (401, 403, 422)

"""The root of every error Link Loom raises on purpose, and the categories callers map.

    LinkloomError                 anything Link Loom raises deliberately
    ├── InvalidInput              the caller sent something malformed (HTTP 422, exit 2)
    ├── NotFound                  the named object does not exist (HTTP 404, exit 3)
    ├── Conflict                  the object is not in a state that allows this (HTTP 409, exit 4)
    ├── NotAuthenticated          no valid credentials (HTTP 401, exit 5)
    ├── NotPermitted              credentials lack the needed role (HTTP 403, exit 5)
    └── Unavailable               a dependency is down or busy; try again (HTTP 503, exit 6)

Concrete errors live in each subpackage's ``errors.py``, carry fields, and take their default
message from their docstring, so ``FlowNotFound(flow_id="x")`` reads well on its own.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LinkloomError(Exception):
    """Link Loom failed."""

    # Not a ClassVar: an error that came over HTTP carries the server's code per instance.
    code: str = "error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str | None = None, /, **fields: Any) -> None:
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)
        template = message or _first_paragraph(self.__doc__ or self.code)
        try:
            self.message = template.format(**fields)
        except (KeyError, IndexError, ValueError):
            self.message = template
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **_jsonable(self.fields)}


def _first_paragraph(doc: str) -> str:
    """A docstring's first paragraph as one line (a long message may wrap in the source)."""
    return " ".join(line.strip() for line in doc.strip().split("\n\n")[0].splitlines())


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str | int | float | bool | type(None) | list | dict):
            out[key] = value
        else:
            out[key] = str(value)
    return out


class InvalidInput(LinkloomError):
    """The input is not valid."""

    code = "invalid_input"
    http_status = 422
    exit_code = 2


class NotFound(LinkloomError):
    """Not found."""

    code = "not_found"
    http_status = 404
    exit_code = 3


class Conflict(LinkloomError):
    """The request conflicts with the current state."""

    code = "conflict"
    http_status = 409
    exit_code = 4


class NotAuthenticated(LinkloomError):
    """Authentication required: pass a token as 'Authorization: Bearer <token>'."""

    code = "not_authenticated"
    http_status = 401
    exit_code = 5


class NotPermitted(LinkloomError):
    """Your role does not allow this."""

    code = "not_permitted"
    http_status = 403
    exit_code = 5


class Unavailable(LinkloomError):
    """A dependency is unavailable; try again shortly."""

    code = "unavailable"
    http_status = 503
    exit_code = 6

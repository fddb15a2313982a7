"""Errors the SDK raises, on both sides of the wire.

    LinkloomError
    ├── LinkloomAPIError              the server answered with an RFC 9457 problem
    │   ├── APIInvalidInput           422 / 400 (also an ``InvalidInput``)
    │   ├── APINotAuthenticated       401 (also a ``NotAuthenticated``)
    │   ├── APINotPermitted           403 (also a ``NotPermitted``)
    │   ├── APINotFound               404 (also a ``NotFound``)
    │   ├── APIConflict               409 (also a ``Conflict``)
    │   └── APIUnavailable            5xx (also an ``Unavailable``)
    ├── ServerUnreachable             connection failed after every retry (an ``Unavailable``)
    └── RunWaitTimeout                ``wait_for_run`` gave up before the run ended

    Retryable                         raised by a task handler: answer 503 so the server retries

Each API error is also an instance of the matching category in ``linkloom.errors``, so the CLI's
exit-code mapping and ``except NotFound`` work on errors that came over HTTP.
"""

from __future__ import annotations

from typing import Any

import httpx

from linkloom import errors


class LinkloomAPIError(errors.LinkloomError):
    """The Link Loom server refused the request ({status}): {detail}"""

    code = "api_error"

    def __init__(
        self,
        message: str | None = None,
        /,
        *,
        status: int,
        code: str,
        detail: str,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.status = status
        self.code = code  # instance attribute: the server's stable ``code`` member
        self.problem = problem or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> LinkloomAPIError:
        """Build the right subclass from an error response (problem+json or anything else)."""
        problem: dict[str, Any] = {}
        try:
            body = response.json()
            if isinstance(body, dict):
                problem = body
        except ValueError:
            pass
        detail = problem.get("detail") or problem.get("title") or problem.get("message")
        if not detail:
            text = response.text.strip()[:300]
            detail = text or response.reason_phrase or f"HTTP {response.status_code}"
        code = str(problem.get("code") or _DEFAULT_CODES.get(response.status_code, "api_error"))
        error_cls = _BY_STATUS.get(response.status_code)
        if error_cls is None:
            error_cls = APIUnavailable if response.status_code >= 500 else LinkloomAPIError
        return error_cls(
            status=response.status_code, code=code, detail=str(detail), problem=problem
        )


class APIInvalidInput(LinkloomAPIError, errors.InvalidInput):
    """The server rejected the input: {detail}"""


class APINotAuthenticated(LinkloomAPIError, errors.NotAuthenticated):
    """Not authenticated: pass a token (Client(token=...) or LOOM_TOKEN). {detail}"""


class APINotPermitted(LinkloomAPIError, errors.NotPermitted):
    """Your token's role does not allow this: {detail}"""


class APINotFound(LinkloomAPIError, errors.NotFound):
    """Not found: {detail}"""


class APIConflict(LinkloomAPIError, errors.Conflict):
    """Conflict: {detail}"""


class APIUnavailable(LinkloomAPIError, errors.Unavailable):
    """The server is unavailable ({status}): {detail}; try again shortly."""


_BY_STATUS: dict[int, type[LinkloomAPIError]] = {
    400: APIInvalidInput,
    401: APINotAuthenticated,
    403: APINotPermitted,
    404: APINotFound,
    409: APIConflict,
    422: APIInvalidInput,
}

_DEFAULT_CODES = {
    400: "invalid_input",
    401: "not_authenticated",
    403: "not_permitted",
    404: "not_found",
    409: "conflict",
    422: "invalid_input",
}


class ServerUnreachable(errors.Unavailable):
    """Cannot reach the Link Loom server at {base_url} ({reason}); is it running? Check the URL."""

    code = "server_unreachable"


class RunWaitTimeout(errors.LinkloomError):
    """Run {run_id!r} is still {status} after {timeout:g}s; wait longer or check 'loom run get'."""

    code = "run_wait_timeout"
    exit_code = 7


class Retryable(Exception):
    """Raise from a task handler when the work may succeed later: the reply is HTTP 503.

    ``retry_after`` (seconds) becomes a ``Retry-After`` header the server honours.
    """

    def __init__(
        self, message: str = "temporarily unavailable", *, retry_after: float | None = None
    ):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

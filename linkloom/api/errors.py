"""Error responses: every error is RFC 9457 ``application/problem+json``.

``install(app)`` registers one handler per error category of ``linkloom.errors`` (Starlette
resolves handlers through the class hierarchy, so each category covers its whole family), one for
request validation, one for HTTP errors raised by the framework (404 on unknown paths, 405) and a
last one for anything unexpected: a 500 with an opaque body whose traceback goes to the log.

The body: ``type``, ``title``, ``status``, ``detail`` (what went wrong and what to do), ``code``
(stable, for programs), plus the error's own fields (``problems`` for spec and input errors).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from linkloom import errors

log = structlog.get_logger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://linkloom.dev/problems/"
CATEGORIES: tuple[type[errors.LinkloomError], ...] = (
    errors.InvalidInput,
    errors.NotFound,
    errors.Conflict,
    errors.NotAuthenticated,
    errors.NotPermitted,
    errors.Unavailable,
)
_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not permitted",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal server error",
    503: "Unavailable",
}


def problem(
    *,
    status: int,
    code: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.replace("_", "-"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers or None)


async def _linkloom_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.LinkloomError)
    extra = {k: v for k, v in exc.to_dict().items() if k not in ("code", "message")}
    retry = extra.get("retry_after")
    headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
    return problem(
        status=exc.http_status, code=exc.code, detail=exc.message, extra=extra, headers=headers
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    detail = "The request is invalid: " + "; ".join(problems) + ". Fix these fields and retry."
    return problem(status=422, code="request_invalid", detail=detail, extra={"problems": problems})


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 400:
        # A body that is not JSON: the same 422 as any other invalid request.
        detail = f"The request body cannot be read ({exc.detail}); send a JSON object."
        return problem(status=422, code="request_invalid", detail=detail)
    if status == 404:
        detail = "No such endpoint; the API is described at /docs and /openapi.json."
        code = "endpoint_not_found"
    elif status == 405:
        detail = "This endpoint does not accept that method; see /docs for the allowed ones."
        code = "method_not_allowed"
    elif status == 413:
        detail, code = str(exc.detail), "request_too_large"
    else:
        detail = str(exc.detail)
        code = "http_error"
    # Keep the framework's headers (``Allow`` on a 405, as RFC 9110 requires).
    return problem(status=status, code=code, detail=detail, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "request_failed",
        method=request.method,
        path=request.url.path,
        error=type(exc).__name__,
        exc_info=exc,
    )
    return problem(
        status=500,
        code="internal_error",
        detail="The server failed unexpectedly; the error is in its log (search for the "
        "X-Request-ID of this response). Try again or report it.",
    )


def install(app: FastAPI) -> None:
    """Register the problem handlers on ``app``."""
    for category in CATEGORIES:
        app.add_exception_handler(category, _linkloom_error)
    app.add_exception_handler(errors.LinkloomError, _linkloom_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

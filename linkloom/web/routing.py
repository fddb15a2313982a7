"""``WebRoute``: the route class of every UI router, mapping errors to HTML pages.

A ``LoginRequired`` becomes a 303 to ``/login?next=…``; a ``LinkloomError`` an error page with
the status its category has in the API (422, 404, 409, 403, 503, 401); anything else propagates
(the server logs it and answers 500).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from linkloom.errors import (
    Conflict,
    InvalidInput,
    LinkloomError,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    Unavailable,
)
from linkloom.web import rendering, session

log = structlog.get_logger(__name__)

STATUS = (
    (InvalidInput, 422, "Invalid request"),
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
    (NotAuthenticated, 401, "Sign in required"),
    (NotPermitted, 403, "Not permitted"),
    (Unavailable, 503, "Unavailable"),
)


def error_page(request: Request, exc: LinkloomError) -> Response:
    status, title = 500, "Error"
    for category, code, name in STATUS:
        if isinstance(exc, category):
            status, title = code, name
            break
    return rendering.page(
        request, "error.html", status_code=status, title=title, message=str(exc), status=status
    )


class WebRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except session.LoginRequired as exc:
                target = "/login?next=" + quote(exc.next_url, safe="/")
                return RedirectResponse(target, status_code=303)
            except NotAuthenticated:
                response = RedirectResponse("/login", status_code=303)
                session.clear_cookie(response)
                return response
            except LinkloomError as exc:
                log.info("web_error", path=request.url.path, code=exc.code, error=str(exc))
                return error_page(request, exc)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
                    for e in exc.errors()
                )
                return error_page(request, InvalidInput(f"invalid request: {problems}"))
            except HTTPException:
                raise
            except Exception:
                # Logged with the request id; the page says no more than the API's opaque 500.
                log.exception("web_page_failed", path=request.url.path)
                return rendering.page(
                    request,
                    "error.html",
                    status_code=500,
                    title="Something went wrong",
                    message="The server failed unexpectedly; the error is in its log. "
                    "Reload the page or try again later.",
                    status=500,
                )

        return handle

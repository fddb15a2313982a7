"""The request-body size limit: ``413`` before a too-large body is read.

``create_app`` wraps the app: ``app.add_middleware(BodyLimit, default=…, larger=…)``. Plain ASGI,
so nothing is buffered here:

* a ``Content-Length`` above the limit is answered at once, without reading the body;
* a streamed body (``Transfer-Encoding: chunked``) is read here up to the limit before the app
  runs (at most the limit is held in memory) and answered 413 as soon as it passes it;
* a body is counted as the app reads it all the same: one that outruns its declared length
  raises ``BodyTooLarge`` (an HTTP 413, ``api.errors``) inside the app's read.

The limit is ``server.max_body_bytes``; opening and revising a proposal (``PROPOSAL_ROUTES``)
may send up to ``server.max_proposal_body_bytes``, since ``proposals.*`` bounds what they commit.
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# POST routes that carry proposal files: the API's open and revise, the web editor's save and
# the web page's revise form.
PROPOSAL_ROUTES = (
    re.compile(r"^/api/v1/proposals/?$"),
    re.compile(r"^/api/v1/proposals/[^/]+/revisions/?$"),
    re.compile(r"^/editor/save/?$"),
    re.compile(r"^/proposals/[^/]+/revise/?$"),
)


class BodyTooLarge(HTTPException):
    """The request body passed the server's limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            status_code=413,
            detail=f"The request body is larger than {limit:,} bytes, this server's limit "
            "(server.max_body_bytes; server.max_proposal_body_bytes for proposals). "
            "Send less, or split it.",
        )


class BodyLimit:
    """ASGI middleware refusing request bodies larger than the limit with 413."""

    def __init__(self, app: ASGIApp, *, default: int, larger: int) -> None:
        self.app = app
        self.default = default
        self.larger = max(larger, default)

    def limit_of(self, scope: Scope) -> int:
        path = scope.get("path", "")
        if scope.get("method") == "POST" and any(r.match(path) for r in PROPOSAL_ROUTES):
            return self.larger
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await _refuse(send, limit)
                return
            await self.app(scope, _counted(receive, limit), send)
            return
        if "chunked" not in (_header(scope, b"transfer-encoding") or ""):
            await self.app(scope, _counted(receive, limit), send)
            return
        # A streamed body: read it (up to the limit) before the app runs, so every route
        # answers 413 the same way, whether or not it would have read the body.
        chunks: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await _refuse(send, limit)
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


def _counted(receive: Receive, limit: int) -> Receive:
    """``receive`` refusing more than ``limit`` bytes (a body longer than its Content-Length
    is the server's to stop, but never trust it)."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value).decode("latin-1").strip().lower()
    return None


async def _refuse(send: Send, limit: int) -> None:
    """A 413 problem answer (``api.errors``'s shape) sent without reading the body."""
    error = BodyTooLarge(limit)
    body = json.dumps(
        {
            "type": "https://linkloom.dev/problems/request-too-large",
            "title": "Content too large",
            "status": 413,
            "detail": error.detail,
            "code": "request_too_large",
            "limit": limit,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

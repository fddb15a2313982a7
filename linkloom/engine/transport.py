"""The production HTTP client of the engine: httpx's API over aiohttp, keeping no cookies.

``make_client()`` returns an ``httpx.AsyncClient`` (the seam the executors and the sandbox's
replaying transport share) whose transport is ``EngineTransport``, httpx-aiohttp's transport
with a cheaper header hand-over: aiohttp gets the request's header pairs instead of an
``httpx.Headers`` mapping (read key by key, each lookup scanning every header). The client
keeps no cookies: a ``Set-Cookie`` from one backend must never ride along on other runs' calls,
and skipping httpx's cookie bookkeeping also saves work on every response.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
import httpx_aiohttp
from httpx_aiohttp import transport as aiohttp_transport


class EngineTransport(httpx_aiohttp.AiohttpTransport):
    """``AiohttpTransport`` passing headers to aiohttp as a list of pairs."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.proxy is not None:
            return await super().handle_async_request(request)
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        with aiohttp_transport.map_aiohttp_exceptions():
            data: Any
            try:
                data = request.content or None
            except httpx.RequestNotRead:
                data = request.stream
                request.headers.pop("transfer-encoding", None)  # aiohttp chunks it itself
            response = await self.client.request(
                method=request.method,
                url=str(request.url),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
            ).__aenter__()
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=aiohttp_transport.AiohttpResponseStream(response),
            request=request,
            extensions=extensions,
        )


def _keep_no_cookies(client: httpx.AsyncClient) -> None:
    jar = client.cookies
    jar.extract_cookies = lambda response: None  # type: ignore[method-assign]
    jar.set_cookie_header = lambda request: None  # type: ignore[method-assign]


def make_client(*, concurrency: int = 64, transport: Any = None) -> httpx.AsyncClient:
    """The engine's client; ``transport`` replaces the network (the sandbox's replay)."""
    if transport is None:
        limits = httpx.Limits(
            max_connections=max(100, concurrency * 2),
            max_keepalive_connections=max(20, concurrency),
        )
        transport = EngineTransport(limits=limits)
    client = httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(None), follow_redirects=False
    )
    _keep_no_cookies(client)
    return client

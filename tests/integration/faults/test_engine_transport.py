"""The engine's production HTTP client against a real local server: headers arrive intact
(repeated ones too), a backend's cookies never ride along on later calls, bodies stream, and a
reset connection surfaces as an httpx transport error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from linkloom.engine import transport


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        seen.append(request)
        if request.path == "/reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if request.path == "/stream":
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(10):
                await response.write(b"x" * 100_000)
            await response.write_eof()
            return response
        response = web.json_response({"ok": True})
        response.set_cookie("session", "from-backend")
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_engine_client_sends_headers_and_keeps_no_cookies(
    server: tuple[str, list[web.Request]],
) -> None:
    url, seen = server
    client = transport.make_client(concurrency=4)
    try:
        headers = [("Idempotency-Key", "r:s"), ("X-Multi", "a"), ("X-Multi", "b")]
        first = await client.post(f"{url}/one", content=b'{"a":1}', headers=headers)
        second = await client.post(f"{url}/two", content=b"{}")
    finally:
        await client.aclose()
    assert first.json() == {"ok": True}
    assert first.headers["set-cookie"].startswith("session=from-backend")
    assert second.status_code == 200
    assert seen[0].headers["Idempotency-Key"] == "r:s"
    assert seen[0].headers.getall("X-Multi") == ["a", "b"]
    assert "Cookie" not in seen[1].headers, "a backend's cookie was sent on a later call"
    assert len(client.cookies) == 0


async def test_engine_client_streams_bodies_and_maps_a_reset(
    server: tuple[str, list[web.Request]],
) -> None:
    url, _ = server
    client = transport.make_client(concurrency=4)
    try:
        async with client.stream("GET", f"{url}/stream") as response:
            sizes = [len(chunk) async for chunk in response.aiter_bytes()]
        with pytest.raises(httpx.TransportError):
            await client.post(f"{url}/reset", content=b"{}")
    finally:
        await client.aclose()
    assert sum(sizes) == 1_000_000
    assert max(sizes) < 1_000_000, "the body was not streamed"

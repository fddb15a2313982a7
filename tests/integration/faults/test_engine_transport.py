"""The engine's production HTTP against a real local server.

The http step's port (``AiohttpPort``) sends httpx's default headers and the step's own, keeps
no cookies, decodes bodies, refuses oversized ones, follows no redirect and reports failed
connections as ``CallFailed``; through it the http step records exactly what it recorded through
the httpx client it replaced (``HttpxPort`` over ``make_client()``, still the other steps'
client): the same exchanges, errors and requests on the wire. That client keeps no cookies
either, streams bodies and maps a reset to an httpx transport error.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import traceback
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from linkloom.clock import SystemClock
from linkloom.engine import transport
from linkloom.engine.models import Exchange, OutboundRequest
from linkloom.engine.ports import CallFailed, StepContext, StepServices
from linkloom.engine.secrets import StaticSecrets
from linkloom.engine.steps.http import HttpExecutor
from tests.support.not_http import not_http_server
from tests.support.notify_receivers import self_signed
from tests.support.step_context import make_context

Server = tuple[str, list[web.Request]]

WORDS = b"plain words, " * 400  # 5200 bytes
# Each path's Content-Encoding and body. Neither brotli nor zstandard is installed: httpx passed
# those bodies through as they came, and so does the port (these bytes are no real brotli).
ENCODED = {
    "/gzip-words": ("gzip", gzip.compress(WORDS)),
    "/deflate": ("deflate", zlib.compress(WORDS)),
    "/raw-deflate": ("deflate", zlib.compress(WORDS, wbits=-zlib.MAX_WBITS)),
    "/gzip-twice": ("gzip, gzip", gzip.compress(gzip.compress(WORDS))),
    "/identity": ("identity", WORDS),
    "/br": ("br", b"\x1b\x03brotli bytes"),
    "/zstd": ("zstd", b"(\xb5/\xfdzstd bytes"),
    "/gzip-br": ("gzip, br", gzip.compress(b"br inside gzip")),
}


async def _handle(request: web.Request) -> web.StreamResponse:
    await request.read()
    path = request.path
    if path == "/reset":
        assert request.transport is not None
        request.transport.abort()
        return web.Response()
    if path == "/short":  # declares 100 bytes, sends 5, hangs up
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b'{"a":')
        assert request.transport is not None
        request.transport.close()
        return response
    if path == "/stream":
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"x" * 100_000)
        await response.write_eof()
        return response
    if path == "/big":
        return web.Response(body=b"x" * 5000, content_type="application/json")
    if path == "/gzip":
        body = gzip.compress(json.dumps({"status": "SUCCESS", "output": "unzipped"}).encode())
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )
    if path == "/badgzip":
        return web.Response(body=b"not gzip", headers={"Content-Encoding": "gzip"})
    if path in ENCODED:
        encoding, body = ENCODED[path]
        headers = {"Content-Encoding": encoding, "Content-Type": "text/plain"}
        return web.Response(body=body, headers=headers)
    if path == "/302":
        return web.Response(status=302, headers={"Location": "/elsewhere"})
    if path == "/503":
        return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "3"})
    if path == "/text":
        return web.Response(text="plain words")
    response = web.json_response({"status": "SUCCESS", "output": {"path": path}})
    response.headers.add("X-Multi", "a")
    response.headers.add("X-Multi", "b")
    response.set_cookie("session", "from-backend")
    return response


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return await _handle(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def port() -> AsyncIterator[transport.AiohttpPort]:
    port = transport.AiohttpPort(concurrency=4)
    yield port
    await port.aclose()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/x"


def _request(url: str, *, max_body: int = 1_000_000, **extra: Any) -> OutboundRequest:
    options: dict[str, Any] = {
        "method": "POST",
        "headers": {"Content-Type": "application/json", "Idempotency-Key": "r:s"},
        "content": b'{"a":1}',
        **extra,
    }
    return OutboundRequest(
        url=url,
        record=Exchange(method=options["method"], url=url),
        step_id="s",
        max_body=max_body,
        **options,
    )


async def test_port_sends_httpx_default_headers_and_keeps_no_cookies(
    server: Server, port: transport.AiohttpPort
) -> None:
    url, seen = server
    # By name, not address: aiohttp's default cookie jar keeps no cookies of bare IP hosts.
    url = url.replace("127.0.0.1", "localhost")
    first = await port.send(_request(f"{url}/one"))
    second = await port.send(_request(f"{url}/two"))
    assert first.headers["set-cookie"].startswith("session=from-backend")
    assert second.status == 200
    sent = seen[0].headers
    assert sent["User-Agent"] == f"python-httpx/{httpx.__version__}"
    assert (sent["Accept"], sent["Accept-Encoding"]) == ("*/*", "gzip, deflate")
    assert sent["Idempotency-Key"] == "r:s"
    assert await seen[0].read() == b'{"a":1}'
    assert "Cookie" not in seen[1].headers, "a backend's cookie was sent on a later call"


async def test_port_answers_lower_case_headers_joined_and_the_body_decoded(
    server: Server, port: transport.AiohttpPort
) -> None:
    url, _ = server
    plain = await port.send(_request(f"{url}/plain"))
    zipped = await port.send(_request(f"{url}/gzip"))
    assert plain.headers["x-multi"] == "a, b"
    assert json.loads(plain.body) == {"status": "SUCCESS", "output": {"path": "/plain"}}
    assert zipped.headers["content-encoding"] == "gzip"
    assert json.loads(zipped.body) == {"status": "SUCCESS", "output": "unzipped"}


async def test_port_decodes_gzip_and_deflate_and_passes_other_encodings_through(
    server: Server, port: transport.AiohttpPort
) -> None:
    url, _ = server
    found = {path: await port.send(_request(f"{url}{path}")) for path in ENCODED}
    for path in ("/gzip-words", "/deflate", "/raw-deflate", "/gzip-twice", "/identity"):
        assert found[path].body == WORDS, path
    assert found["/br"].body == ENCODED["/br"][1]  # as it came, the header kept
    assert found["/br"].headers["content-encoding"] == "br"
    assert found["/zstd"].body == ENCODED["/zstd"][1]
    assert found["/gzip-br"].body == b"br inside gzip"  # httpx skipped br, undid gzip


async def test_port_limits_a_compressed_body_by_its_decoded_size(
    server: Server, port: transport.AiohttpPort
) -> None:
    """A small body that inflates past the limit (a decompression bomb) is refused: the
    limit holds for what it decodes to, not only for what came over the wire."""
    url, _ = server
    for path in ("/gzip-words", "/deflate", "/raw-deflate", "/gzip-twice"):
        assert len(ENCODED[path][1]) < 1000
        refused = await port.send(_request(f"{url}{path}", max_body=5000))
        whole = await port.send(_request(f"{url}{path}", max_body=len(WORDS)))
        assert (refused.too_large, refused.body, refused.status) == (True, b"", 200), path
        assert (whole.too_large, whole.body) == (False, WORDS), path


async def test_port_refuses_bodies_over_the_limit_and_follows_no_redirect(
    server: Server, port: transport.AiohttpPort
) -> None:
    url, _ = server
    declared = await port.send(_request(f"{url}/big", max_body=2000))
    streamed = await port.send(_request(f"{url}/stream", max_body=150_000))
    whole = await port.send(_request(f"{url}/stream", max_body=1_000_000))
    moved = await port.send(_request(f"{url}/302"))
    assert (declared.too_large, declared.body, declared.status) == (True, b"", 200)
    assert (streamed.too_large, streamed.body) == (True, b"")
    assert (whole.too_large, len(whole.body)) == (False, 1_000_000)
    assert (moved.status, moved.headers["location"]) == (302, "/elsewhere")


async def test_port_reports_calls_without_a_whole_answer_as_call_failed(
    server: Server, port: transport.AiohttpPort
) -> None:
    url, _ = server
    with pytest.raises(CallFailed) as refused:
        await port.send(_request(_dead_url()))
    with pytest.raises(CallFailed) as reset:
        await port.send(_request(f"{url}/reset"))
    with pytest.raises(CallFailed) as short:
        await port.send(_request(f"{url}/short"))
    with pytest.raises(CallFailed) as bad_port:
        await port.send(_request("http://127.0.0.1:99999/x"))
    assert refused.value.detail == "could not connect (connection refused)"
    assert reset.value.detail == "the server closed the connection without an answer"
    assert short.value.detail == (
        "the answer's body was cut short "
        "(Not enough data to satisfy content length header (received 5 of 100 bytes))"
    )
    assert (short.value.status, short.value.headers["content-length"]) == (200, "100")
    for failed in (refused, reset, short):
        assert (failed.value.kind, failed.value.retryable) == ("connection", True)
    # a URL aiohttp cannot send is the step's configuration: retrying cannot help
    assert bad_port.value.detail == "aiohttp cannot send it (Port out of range 0-65535)"
    assert (bad_port.value.kind, bad_port.value.retryable) == ("config", False)


async def test_port_lets_a_body_that_does_not_decode_escape_as_before(
    server: Server, port: transport.AiohttpPort
) -> None:
    """The port raises httpx's DecodingError, with httpx's words, as the httpx route does; the
    http step turns either into a ``bad_response`` error, not retried."""
    url, _ = server
    with pytest.raises(httpx.DecodingError, match=r"^Error -3 while decompressing data"):
        await port.send(_request(f"{url}/badgzip"))


async def test_port_errors_name_no_part_of_the_url(server: Server) -> None:
    """aiohttp's messages hold the whole URL, userinfo and query string with it; the port's
    say what happened and nothing of the URL (the step names scheme, host, port and path)."""
    url, _ = server
    plain_port = url.rsplit(":", 1)[1]
    userinfo, query = "user:pw@", "?token=SECRET-DERIVED"
    dead = _dead_url().removeprefix("http://")
    calls = {
        f"http://{userinfo}{dead}{query}": CallFailed,
        f"http://{userinfo}127.0.0.1:99999/x{query}": CallFailed,
        f"ftp://{userinfo}files.test/x{query}": CallFailed,
        f"/x{query}": CallFailed,
        f"https://{userinfo}127.0.0.1:{plain_port}/x{query}": CallFailed,  # TLS to plain HTTP
    }
    port = transport.AiohttpPort(concurrency=4)
    found = {}
    try:
        async with not_http_server() as garbled:
            calls[f"http://{userinfo}127.0.0.1:{garbled}/x{query}"] = transport.UnreadableAnswer
            for sent, raised in calls.items():
                with pytest.raises(raised) as failed:
                    await port.send(_request(sent))
                found[sent] = failed.value
    finally:
        await port.aclose()
    for sent, error in found.items():
        text = "".join(traceback.format_exception(error))  # as a log shows it, with its chain
        for part in ("SECRET-DERIVED", "token", "pw@", "/x"):
            assert part not in text, (sent, text)
    refused, bad_port, ftp, relative, tls, garbled_answer = map(str, found.values())
    assert refused == "could not connect (connection refused)"
    assert bad_port == "aiohttp cannot send it (Port out of range 0-65535)"
    assert ftp == "only http and https URLs can be sent, not ftp:"
    assert relative == "it has no host"
    assert tls.startswith("the TLS handshake failed (")  # OpenSSL's words follow
    assert garbled_answer == ("Bad status line: Expected HTTP/, RTSP/ or ICE/: b'NOT HTTP AT ALL'")


async def test_port_names_a_refused_certificate_and_not_the_url(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    tls_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    port = transport.AiohttpPort(concurrency=4)
    try:
        with pytest.raises(CallFailed) as failed:
            await port.send(_request(f"https://user:pw@127.0.0.1:{tls_port}/x?token=SECRET"))
    finally:
        await port.aclose()
        await runner.cleanup()
    assert failed.value.detail == "the TLS certificate was refused (self-signed certificate)"
    assert (failed.value.kind, failed.value.retryable) == ("connection", True)


def _attempt(services: StepServices, step: dict[str, Any]) -> StepContext:
    ctx = make_context(step={"type": "http", **step}, services=services, inputs={"n": 5})
    ctx.attempt_id = "step-run-1.1"
    return ctx


def _comparable(result: Any, seen: list[web.Request]) -> Any:
    volatile = {"date", "x-loom-timestamp", "x-loom-signature"}
    exchanges = []
    for exchange in result.exchanges:
        data = exchange.to_dict()
        data.pop("duration_ms")
        data["request_headers"] = {
            k: v for k, v in data["request_headers"].items() if k.lower() not in volatile
        }
        data["response_headers"].pop("date", None)
        exchanges.append(data)
    wire = [
        sorted((k.lower(), v) for k, v in r.headers.items() if k.lower() not in volatile)
        for r in seen
    ]
    return result.error, result.output, exchanges, wire, [r.path_qs for r in seen]


@pytest.mark.parametrize(
    "step",
    [
        {"url": "{base}/ok"},
        {"url": "{base}/gzip"},
        *({"url": f"{{base}}{path}"} for path in ENCODED),
        {"url": "{base}/503"},
        {"url": "{base}/302"},
        {"url": "{base}/text"},
        {"url": "{base}/big"},
        {"url": "{base}/stream"},
        {"url": "{base}/reset"},
        {"url": "{base}/short"},
        {"url": "{dead}"},
        {"url": "http://127.0.0.1:99999/x"},
        {"url": "http:///x"},
        {"url": "{base}/a b/\u00e9?q=1", "method": "GET", "query": {"n": "{{ inputs.n }}"}},
        {
            "url": "{base}/put",
            "method": "PUT",
            "body": {"n": "{{ inputs.n }}"},
            "headers": {"Accept": "text/plain", "content-type": "application/x-n"},
        },
    ],
)
async def test_http_step_records_through_the_port_what_it_did_through_httpx(
    server: Server, port: transport.AiohttpPort, step: dict[str, Any]
) -> None:
    """The same step, once through ``AiohttpPort`` and once through the httpx client."""
    base, seen = server
    step = {**step, "url": step["url"].format(base=base, dead=_dead_url())}
    options: dict[str, Any] = {
        "clock": SystemClock(),
        "secrets": StaticSecrets({}),
        "signing_key": "key",
        "max_response_bytes": 500_000,
    }
    http = transport.make_client(concurrency=4)
    found = []
    try:
        for services in (
            StepServices(http=http, **options),  # the step's former route: httpx over aiohttp
            StepServices(http=http, outbound=port, **options),
        ):
            seen.clear()
            result = await HttpExecutor().execute(_attempt(services, step))
            found.append(_comparable(result, seen))
    finally:
        await http.aclose()
    before, now = found
    assert now == before


async def test_engine_client_sends_headers_and_keeps_no_cookies(server: Server) -> None:
    url, seen = server
    url = url.replace("127.0.0.1", "localhost")  # a named host: see the port's test
    client = transport.make_client(concurrency=4)
    try:
        headers = [("Idempotency-Key", "r:s"), ("X-Multi", "a"), ("X-Multi", "b")]
        first = await client.post(f"{url}/one", content=b'{"a":1}', headers=headers)
        second = await client.post(f"{url}/two", content=b"{}")
    finally:
        await client.aclose()
    assert first.json() == {"status": "SUCCESS", "output": {"path": "/one"}}
    assert first.headers["set-cookie"].startswith("session=from-backend")
    assert second.status_code == 200
    assert seen[0].headers["Idempotency-Key"] == "r:s"
    assert seen[0].headers.getall("X-Multi") == ["a", "b"]
    assert "Cookie" not in seen[1].headers, "a backend's cookie was sent on a later call"
    assert len(client.cookies) == 0


async def test_engine_client_streams_bodies_and_maps_a_reset(server: Server) -> None:
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

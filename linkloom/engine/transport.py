"""The engine's production HTTP: the ``http`` step's ``HttpPort`` on aiohttp, and the httpx client
of the other steps. Neither keeps cookies, follows redirects or times out by itself.

``AiohttpPort`` sends each ``OutboundRequest`` with aiohttp directly (no httpx models on the hot
path: ~0.2 ms of CPU per call less) and answers the way the httpx-over-aiohttp client it replaced
did: the same default headers on the wire, the body decoded as httpx decoded it (gzip, deflate
and identity; any other encoding's bytes passed through, header kept), headers as lower-case
names with repeated values joined by ", ", and each aiohttp error reported as a ``CallFailed``
that names the cause but no part of the URL (``failure``). ``HttpxPort`` is the port over any
``httpx.AsyncClient``: tests' ``httpx.MockTransport`` and
``wiring.build_services(http_transport=…)`` reach the step through it.

``make_client()`` returns the ``httpx.AsyncClient`` the llm step and notifications use: httpx's
API over aiohttp (``EngineTransport``, httpx-aiohttp's transport with a cheaper header hand-over).
The client keeps no cookies: a ``Set-Cookie`` from one backend must never ride along on other
runs' calls.
"""

from __future__ import annotations

import os
import ssl
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import httpx_aiohttp
from httpx_aiohttp import transport as aiohttp_transport

from linkloom.engine.models import RECORD_EXTENSION, InboundResponse, OutboundRequest
from linkloom.engine.ports import DEFAULT_HEADERS, CallFailed

KEEPALIVE_SECONDS = 5.0  # httpx's default keep-alive expiry, which the transport used
READ_CHUNK = 64 * 1024


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=max(100, concurrency * 2),
        max_keepalive_connections=max(20, concurrency),
    )


class AiohttpPort:
    """The ``HttpPort`` of production: one aiohttp session, opened on the first request."""

    def __init__(self, *, concurrency: int = 64) -> None:
        self.max_connections = _limits(concurrency).max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections or 0,
            keepalive_timeout=KEEPALIVE_SECONDS,
            # httpx's context: certifi's CAs, SSL_CERT_FILE / SSL_CERT_DIR honoured
            ssl=httpx.create_ssl_context(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=DEFAULT_HEADERS,  # aiohttp adds Host and Content-Length, as it did then
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # the step's timeout bounds each call
            # aiohttp would decode brotli and zstd too when their packages are installed, and fail
            # the call when they are not; the port decodes what httpx decoded (``Decoder``)
            auto_decompress=False,
        )
        return self._session

    async def send(self, request: OutboundRequest) -> InboundResponse:
        session = self._session or self._open()
        status: int | None = None
        headers: dict[str, str] = {}
        try:
            async with session.request(
                request.method,
                request.url,
                # lower-case names, as httpx handed them over: a name set twice in two cases
                # is sent twice, not merged
                headers=[(k.lower(), v) for k, v in request.headers.items()],
                data=request.content or None,
                allow_redirects=False,
            ) as response:
                status = response.status
                headers = header_dict(response.raw_headers)
                body = await read_body(
                    headers,
                    response.content.iter_chunked(READ_CHUNK),
                    request.max_body,
                    decoder=decoder_for(headers, limit=request.max_body),
                )
        except (aiohttp.ClientError, OSError) as exc:
            # Not chained: aiohttp's exception names the URL, and a traceback shows the chain.
            raise failure(exc, url=request.url, status=status, headers=headers) from None
        return _answer(status, headers, body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def read_body(
    headers: dict[str, str],
    chunks: AsyncIterator[bytes],
    limit: int,
    *,
    decoder: Decoder | None = None,
) -> bytes | None:
    """The whole body, or None when it declares or streams more than ``limit`` bytes, or decodes
    to more (the rest is not read). ``decoder`` undoes the body's ``Content-Encoding``."""
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                return None
            parts.append(decoder.decode(chunk) if decoder else chunk)
        if decoder:
            parts.append(decoder.flush())
    except _TooLarge:
        return None
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _TooLarge(Exception):
    """A body decodes to more than the limit."""


class _Inflater:
    """One ``gzip`` or ``deflate`` layer, as httpx's ``GZipDecoder`` and ``DeflateDecoder``
    decoded it (a ``deflate`` body without zlib's header is read as raw deflate), that never
    holds more than ``limit`` decoded bytes: a small body that inflates to gigabytes (a
    decompression bomb) stops at ``limit + 1``."""

    def __init__(self, encoding: str, *, limit: int) -> None:
        gzip = encoding == "gzip"
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
        self._raw_deflate_next = not gzip  # httpx's fallback, tried on the first chunk only
        self._room = limit

    def decode(self, data: bytes) -> bytes:
        first, self._raw_deflate_next = self._raw_deflate_next, False
        try:
            out = self._inflate.decompress(data, self._room + 1)
        except zlib.error as exc:
            if not first:
                raise httpx.DecodingError(str(exc)) from exc  # as httpx raised it
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data)
        return self._count(out)

    def flush(self) -> bytes:
        try:
            return self._count(self._inflate.flush())
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from exc

    def _count(self, out: bytes) -> bytes:
        self._room -= len(out)
        if self._room < 0:
            raise _TooLarge
        return out


def decoder_for(headers: dict[str, str], *, limit: int) -> Decoder | None:
    """The ``Decoder`` of an answer with these headers; None when it has nothing to undo."""
    encoding = headers.get("content-encoding")
    if not encoding:
        return None
    found = Decoder(encoding, limit=limit)
    return found if found.layers else None


INFLATED = frozenset({"gzip", "deflate"})  # the encodings httpx decoded without extra packages


class Decoder:
    """Undoes a ``Content-Encoding`` as httpx did: each listed ``gzip`` or ``deflate`` layer,
    last first; ``identity`` and any encoding it cannot decode (``br``, ``zstd``…) are skipped,
    so their bytes pass through as they came, the header kept. A layer that does not decode
    raises httpx's ``DecodingError``; one that decodes to more than ``limit`` bytes ends the
    read as too large."""

    def __init__(self, content_encoding: str, *, limit: int) -> None:
        names = [name.strip().lower() for name in content_encoding.split(",")]
        self.layers = [_Inflater(name, limit=limit) for name in reversed(names) if name in INFLATED]

    def decode(self, data: bytes) -> bytes:
        for layer in self.layers:
            data = layer.decode(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for layer in self.layers:
            data = layer.decode(data) + layer.flush()
        return data


def _answer(status: int, headers: dict[str, str], body: bytes | None) -> InboundResponse:
    if body is None:
        return InboundResponse(status=status, headers=headers, too_large=True)
    return InboundResponse(status=status, headers=headers, body=body)


class UnreadableAnswer(Exception):
    """An answer aiohttp could not parse (a malformed status line or header…), its text why: the
    http step fails the attempt with ``bad_response``, not retried."""


def failure(
    exc: BaseException, *, url: str, status: int | None, headers: dict[str, str]
) -> CallFailed | UnreadableAnswer:
    """What the port raises for aiohttp's ``exc``: the cause, in words, and no part of ``url``.

    aiohttp's messages carry the URL whole, userinfo and query string included, where a value a
    template derived from a secret may be (masking by value cannot find it); the step names the
    scheme, host, port and path itself. Its connection errors are ``CallFailed`` of kind
    ``connection`` (retried), a URL it cannot send is one of kind ``config`` (not retried).
    """
    reason = _reason(exc, url)
    if isinstance(exc, TimeoutError):  # a timeout of aiohttp's own (none is configured)
        name = "ReadTimeout" if isinstance(exc, aiohttp.SocketTimeoutError) else "ConnectTimeout"
        return CallFailed(name, kind="timeout", status=status, headers=headers)
    if isinstance(exc, aiohttp.NonHttpUrlClientError | aiohttp.InvalidUrlClientError):
        return CallFailed(reason, kind="config", retryable=False)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return CallFailed(f"the proxy refused the call: {reason}", status=status, headers=headers)
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed answer
        return UnreadableAnswer(reason)
    return CallFailed(reason, status=status, headers=headers)


def _reason(exc: BaseException, url: str) -> str:
    """Why ``exc`` happened, without aiohttp's words around it (which name the URL)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        reason = f"could not resolve the host ({_os_reason(exc.os_error)})"
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = f"the TLS certificate was refused ({_os_reason(exc.certificate_error)})"
    elif isinstance(exc, aiohttp.ClientSSLError):
        reason = f"the TLS handshake failed ({_os_reason(exc.os_error)})"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        reason = f"could not connect ({_os_reason(exc.os_error)})"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "the server closed the connection without an answer"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        cause = getattr(exc.__cause__, "message", None) or type(exc.__cause__ or exc).__name__
        reason = f"the answer's body was cut short ({str(cause).rstrip('.')})"
    elif isinstance(exc, aiohttp.NonHttpUrlClientError):
        scheme = str(exc.args[0] if exc.args else "").partition(":")[0]
        reason = f"only http and https URLs can be sent, not {scheme}:"
    elif isinstance(exc, aiohttp.InvalidUrlClientError):
        cause = exc.__cause__
        reason = f"aiohttp cannot send it ({cause})" if cause else "it has no host"
    elif isinstance(exc, aiohttp.ClientResponseError):  # its status is aiohttp's, not an answer's
        reason = " ".join(str(exc.message).split()).removesuffix(" ^")
    elif isinstance(exc, OSError):
        reason = f"the connection failed ({_os_reason(exc)})"
    else:
        reason = f"the connection failed ({type(exc).__name__})"
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    # a certificate's message names the host it was not valid for, quoted
    return reason.replace(f"'{host}'", "the host") if host else reason


def _os_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return str(error.verify_message)
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    if isinstance(error, OSError) and error.errno and error.errno > 0:
        return os.strerror(error.errno).lower()
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror).lower()
    return type(error).__name__


def location(url: str, *, path: bool = True, rest: bool = False) -> str:
    """``url`` as an error may name it: scheme, host and port, and its path when ``path``; never
    the userinfo, nor the query string and fragment unless ``rest`` (a template's literal
    prefix, compared with this)."""
    scheme, sep, after = url.partition("://")
    if not sep:
        return url.partition("?")[0].partition("#")[0]
    end = next((i for i, char in enumerate(after) if char in "/?#"), len(after))
    host = after[:end].rpartition("@")[2]
    tail = after[end:] if rest else after[end:].partition("?")[0].partition("#")[0]
    return f"{scheme}://{host}{tail if path else ''}"


def header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response headers as ``dict(httpx.Headers)`` read them: lower-case names, repeated
    values joined with ", ", decoded as ASCII, else UTF-8, else Latin-1 (all alike)."""
    raw = tuple(raw)
    for encoding in ("ascii", "utf-8"):
        try:
            pairs = [(k.decode(encoding).lower(), v.decode(encoding)) for k, v in raw]
            break
        except UnicodeDecodeError:
            continue
    else:
        pairs = [(k.decode("iso-8859-1").lower(), v.decode("iso-8859-1")) for k, v in raw]
    out: dict[str, str] = {}
    for name, value in pairs:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


class HttpxPort:
    """The ``HttpPort`` over an ``httpx.AsyncClient`` (tests' ``MockTransport``, a replaying
    transport). The transport finds the engine's record of each request in its ``loom.record``
    extension."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, request: OutboundRequest) -> InboundResponse:
        status: int | None = None
        headers: dict[str, str] = {}
        origin = {
            "record": request.record,
            "step_id": request.step_id,
            "item_index": request.item_index,
        }
        try:
            built = self.client.build_request(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content or None,
                extensions={RECORD_EXTENSION: origin},
            )
            response = await self.client.send(built, stream=True)
            try:
                status = response.status_code
                headers = dict(response.headers)
                body = await read_body(headers, response.aiter_bytes(), request.max_body)
            finally:
                await response.aclose()
        except httpx.InvalidURL as exc:
            raise CallFailed(str(exc), kind="config", retryable=False) from exc
        except (httpx.TransportError, OSError) as exc:
            raise _httpx_failure(exc, url=request.url, status=status, headers=headers) from None
        return _answer(status, headers, body)


def _httpx_failure(
    exc: httpx.TransportError | OSError, *, url: str, status: int | None, headers: dict[str, str]
) -> CallFailed | UnreadableAnswer:
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError) and not isinstance(cause, TimeoutError):
        # httpx-aiohttp's (where a dropped connection is a ConnectTimeout): told as
        # ``AiohttpPort`` tells it, without the URL aiohttp's text names
        return failure(cause, url=url, status=status, headers=headers)
    if isinstance(exc, httpx.TimeoutException):
        return CallFailed(type(exc).__name__, kind="timeout", status=status, headers=headers)
    if getattr(exc, "retryable", True) is False:
        # The sandbox's UnrecordedRequest: replay is deterministic, retrying cannot help.
        return CallFailed(
            str(exc), kind="unrecorded", retryable=False, status=status, headers=headers
        )
    return CallFailed(str(exc) or type(exc).__name__, status=status, headers=headers)


class EngineTransport(httpx_aiohttp.AiohttpTransport):
    """``AiohttpTransport`` passing headers to aiohttp as a list of pairs, keeping no cookies."""

    def get_client(self) -> aiohttp.ClientSession:
        """httpx-aiohttp's session (``make_client`` sets no socket path or local address)
        without a cookie jar: aiohttp's own keeps named hosts' cookies (only bare IPs'
        are refused)."""
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

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
    """The httpx client of the other steps; ``transport`` replaces the network (tests)."""
    if transport is None:
        transport = EngineTransport(limits=_limits(concurrency))
    client = httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(None), follow_redirects=False
    )
    _keep_no_cookies(client)
    return client

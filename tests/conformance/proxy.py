"""A recording, fault-injecting HTTP proxy between a real Link Loom server and SDK backends.

Both directions go through it, so a test sees every byte each side sent and can break the
conversation the way networks and attackers do:

* ``/to/<backend>/<fault>/<path>``: a delivery from the server, forwarded to that backend's
  ``/<path>``. ``fault`` is one of ``FAULTS`` (``pass`` forwards it untouched).
* ``/server/<name>/<path>``: a callback or heartbeat from a backend, forwarded to the server
  registered as ``name``. A delivery that passed with the fault ``drop-heartbeats`` or
  ``lose-first-callback-answer`` arms that fault for its callback token.

Every exchange is kept in ``exchanges`` (request and answer, raw).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.servers import ThreadedAiohttpServer

# server → backend faults
FAULTS = (
    "pass",  # forward untouched
    "lose-first-answer",  # forward; drop the connection instead of the first answer per key
    "bad-signature",  # change one hex digit of the signature
    "tampered-body",  # change the body, keep the signature
    "no-signature",  # remove X-Loom-Timestamp and X-Loom-Signature
    "two-signatures",  # send "v1=<valid>,v1=<valid>": a list of entries is refused
    "stale",  # re-sign validly with a timestamp 400 s in the past
    "future",  # re-sign validly with a timestamp 400 s in the future
    "skewed-ok",  # re-sign validly 200 s in the past: inside the 300 s window
    "replay-new-key",  # forward; then send the captured delivery again under a new
    # Idempotency-Key header (not signed): the envelope's key, which is, decides
    "drop-heartbeats",  # forward; answer this attempt's heartbeats 503 without forwarding
    "lose-first-callback-answer",  # forward; the first callback reaches the server, its
    # answer is dropped, so the backend sends it again and must take the 409
)


@dataclass
class Exchange:
    kind: str  # "delivery" | "callback" | "heartbeat"
    target: str  # backend name, or server name
    fault: str
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    dropped: bool = False  # the answer was not passed on (connection aborted / 503 by proxy)
    at: float = field(default_factory=time.time)

    @property
    def token(self) -> str:
        """The callback token of a callback or heartbeat."""
        parts = self.path.split("/callbacks/", 1)[1].split("/")
        return parts[0]

    def json(self) -> Any:
        return json.loads(self.response_body) if self.response_body else None

    def request_json(self) -> Any:
        return json.loads(self.request_body) if self.request_body else None


class Proxy(ThreadedAiohttpServer):
    def __init__(self, signing_key: str) -> None:
        super().__init__()
        self.key = signing_key
        self.backends: dict[str, str] = {}
        self.servers: dict[str, str] = {}
        self.exchanges: list[Exchange] = []
        self.armed: dict[str, str] = {}  # callback token → fault
        self.answered: Counter[str] = Counter()  # for lose-first-answer, per Idempotency-Key
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None

    # ---- what tests read --------------------------------------------------------------
    def backend_url(self, backend: str, fault: str = "pass") -> str:
        assert fault in FAULTS, fault
        return f"{self.url}/to/{backend}/{fault}"

    def server_url(self, name: str) -> str:
        return f"{self.url}/server/{name}"

    def seen(self, kind: str | None = None, **match: Any) -> list[Exchange]:
        with self._lock:
            items = list(self.exchanges)
        out = []
        for ex in items:
            if kind is not None and ex.kind != kind:
                continue
            if all(getattr(ex, k) == v for k, v in match.items()):
                out.append(ex)
        return out

    def deliveries(self, run_id: str, step_id: str | None = None) -> list[Exchange]:
        return [
            ex
            for ex in self.seen("delivery")
            if ex.request_headers.get("x-loom-run-id") == run_id
            and (step_id is None or ex.request_headers.get("x-loom-step-id") == step_id)
        ]

    def callbacks_of(self, delivery: Exchange) -> tuple[list[Exchange], list[Exchange]]:
        """(callbacks, heartbeats) sent for the attempt of an async delivery."""
        url = delivery.request_headers.get("x-loom-callback-url", "")
        token = url.rsplit("/", 1)[-1]
        cbs = [ex for ex in self.seen("callback") if ex.token == token]
        hbs = [ex for ex in self.seen("heartbeat") if ex.token == token]
        return cbs, hbs

    # ---- the server ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            # A fresh connection per forwarded request: a pooled one idle past the server's
            # keep-alive (uvicorn closes after 5 s; a late callback comes 12 s after the last
            # forwarded request) can be closed under us, which failed the request with
            # ServerDisconnectedError and left its exchange unanswered.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=120),
                auto_decompress=False,
            )
        parts = request.path.split("/", 4)  # "", "to"|"server", name, fault|path...
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if len(parts) >= 4 and parts[1] == "to":
            fault = parts[3]
            rest = "/" + (parts[4] if len(parts) > 4 else "")
            return await self._delivery(request, parts[2], fault, rest, headers, body)
        if len(parts) >= 3 and parts[1] == "server":
            rest = "/" + "/".join(parts[3:])
            return await self._callback(request, parts[2], rest, headers, body)
        return web.Response(status=404, text=f"proxy: no route for {request.path}")

    async def _delivery(
        self,
        request: web.Request,
        backend: str,
        fault: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> web.StreamResponse:
        ex = Exchange(
            kind="delivery", target=backend, fault=fault, method=request.method,
            path=path, request_headers=dict(headers), request_body=body,
        )  # fmt: skip
        self._add(ex)
        send_headers = {
            k: v for k, v in headers.items() if k not in ("host", "content-length", "connection")
        }
        if fault == "bad-signature":
            sig = send_headers["x-loom-signature"]
            send_headers["x-loom-signature"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        elif fault == "tampered-body":
            body = body.replace(b'"amount":', b'"amount":9', 1) if b'"amount":' in body else (
                body[:-1] + b',"tampered":true}'
            )  # fmt: skip
        elif fault == "no-signature":
            send_headers.pop("x-loom-signature", None)
            send_headers.pop("x-loom-timestamp", None)
        elif fault == "two-signatures":
            sig = send_headers["x-loom-signature"]
            send_headers["x-loom-signature"] = f"{sig},{sig}"
        elif fault in ("stale", "future", "skewed-ok"):
            shift = {"stale": -400, "future": 400, "skewed-ok": -200}[fault]
            ts = str(int(time.time()) + shift)
            send_headers["x-loom-timestamp"] = ts
            send_headers["x-loom-signature"] = "v1=" + _mac(self.key, ts.encode() + b"." + body)
        elif fault in ("drop-heartbeats", "lose-first-callback-answer"):
            url = headers.get("x-loom-callback-url", "")
            if url:
                with self._lock:
                    self.armed[url.rsplit("/", 1)[-1]] = fault
        target = self.backends[backend] + path
        if request.query_string:
            target += "?" + request.query_string
        assert self._session is not None
        async with self._session.request(
            request.method, target, data=body if body else None, headers=send_headers
        ) as answer:
            ex.status = answer.status
            ex.response_headers = {k.lower(): v for k, v in answer.headers.items()}
            ex.response_body = await answer.read()
        key = headers.get("idempotency-key", "")
        if fault == "replay-new-key":
            replay = Exchange(
                kind="delivery", target=backend, fault="replayed", method=request.method,
                path=path, request_headers={**headers, "idempotency-key": key + ":replayed"},
                request_body=body,
            )  # fmt: skip
            self._add(replay)
            async with self._session.request(
                request.method, target, data=body if body else None,
                headers={**send_headers, "idempotency-key": key + ":replayed"},
            ) as again:  # fmt: skip
                replay.status = again.status
                replay.response_headers = {k.lower(): v for k, v in again.headers.items()}
                replay.response_body = await again.read()
        if fault == "lose-first-answer":
            with self._lock:
                self.answered[key] += 1
                first = self.answered[key] == 1
            if first:
                ex.dropped = True
                return _abort(request)
        return _relay(ex)

    async def _callback(
        self, request: web.Request, server: str, path: str, headers: dict[str, str], body: bytes
    ) -> web.StreamResponse:
        kind = "heartbeat" if path.endswith("/heartbeat") else "callback"
        ex = Exchange(
            kind=kind, target=server, fault="", method=request.method, path=path,
            request_headers=dict(headers), request_body=body,
        )  # fmt: skip
        token = ex.token if "/callbacks/" in path else ""
        with self._lock:
            fault = self.armed.get(token, "")
            first_callback = kind == "callback" and not any(
                e.kind == "callback" and "/callbacks/" in e.path and e.token == token
                for e in self.exchanges
            )
        ex.fault = fault
        self._add(ex)
        if fault == "drop-heartbeats" and kind == "heartbeat":
            ex.status, ex.dropped = 503, True
            return web.json_response({"detail": "proxy: heartbeat dropped"}, status=503)
        send_headers = {
            k: v for k, v in headers.items() if k not in ("host", "content-length", "connection")
        }
        assert self._session is not None
        async with self._session.request(
            request.method, self.servers[server] + path, data=body, headers=send_headers
        ) as answer:
            ex.status = answer.status
            ex.response_headers = {k.lower(): v for k, v in answer.headers.items()}
            ex.response_body = await answer.read()
        if fault == "lose-first-callback-answer" and first_callback:
            ex.dropped = True
            return _abort(request)
        return _relay(ex)

    def _add(self, ex: Exchange) -> None:
        with self._lock:
            self.exchanges.append(ex)

    def __exit__(self, *exc: object) -> None:
        if self._session is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(10)
        super().__exit__(*exc)


def _relay(ex: Exchange) -> web.Response:
    headers = {
        k: v
        for k, v in ex.response_headers.items()
        if k not in ("content-length", "transfer-encoding", "connection", "content-encoding")
    }
    assert ex.status is not None
    return web.Response(status=ex.status, body=ex.response_body, headers=headers)


def _abort(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.abort()  # the answer is lost on the way back
    return web.Response(status=500)


def _mac(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def signature_ok(key: str, headers: dict[str, str], body: bytes, *, window: float = 300) -> bool:
    """Check a request's signature exactly as docs/protocol.md section 4 states it (written
    independently of ``linkloom.signing``)."""
    ts, sig = headers.get("x-loom-timestamp", ""), headers.get("x-loom-signature", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > window:
        return False
    return hmac.compare_digest(sig, "v1=" + _mac(key, ts.encode() + b"." + body))

"""The replaying transport: answers HTTP requests from a fixture case's recorded exchanges.

Matching key: method, normalised URL (lower-case scheme and host, default port dropped, query
sorted, credentials scrubbed) and the canonical JSON body (sorted keys, credentials scrubbed, the
ignored volatile paths removed). Headers never take part. Identical requests replay their
recordings in recorded order; once those run out, the last recording answers again.

A request with no recording raises ``UnrecordedRequest`` ("unrecorded request: POST https://…"),
a non-retryable transport error the http step turns into a failed step, and is collected in
``Replayer.unrecorded`` so the diff can list what the proposal "would have called".
"""

from __future__ import annotations

import fnmatch
import functools
import json
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from linkloom.sandbox.fixtures import RecordedExchange
from linkloom.sandbox.scrub import Scrubber

# Fields of the task envelope that differ on every run or attempt.
DEFAULT_IGNORED_PATHS: tuple[str, ...] = (
    "run_id",
    "idempotency_key",
    "attempt",
    "callback",
    "flow_version",
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnrecordedRequest(httpx.TransportError):
    """The sandbox has no recording for this request (never retried: replaying is deterministic)."""

    retryable = False

    def __init__(self, method: str, url: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(f"unrecorded request: {method} {url}", request=request)
        self.method = method
        self.url = url


@dataclass(frozen=True, slots=True, kw_only=True)
class UnrecordedCall:
    """A request the proposal made that production never made."""

    method: str
    url: str
    body: Any = None
    step_id: str | None = None

    def describe(self) -> str:
        return f"{self.method} {self.url}"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "body": self.body, "step_id": self.step_id}


def normalise_url(url: str, scrub: Scrubber | None = None) -> str:
    if scrub is not None:
        url = scrub.url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def drop_paths(value: Any, patterns: Sequence[str], prefix: str = "") -> Any:
    """Remove keys whose dotted path (``a.0.b`` for lists) or bare key matches a glob."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if _path_ignored(path, str(key), tuple(patterns)):
                continue
            out[key] = drop_paths(item, patterns, path)
        return out
    if isinstance(value, list):
        return [drop_paths(v, patterns, f"{prefix}.{i}") for i, v in enumerate(value)]
    return value


@functools.lru_cache(maxsize=8192)
def _path_ignored(path: str, key: str, patterns: tuple[str, ...]) -> bool:
    # Cached: bodies of one flow repeat the same paths thousands of times.
    return any(
        fnmatch.fnmatchcase(path, p) or ("." not in p and fnmatch.fnmatchcase(key, p))
        for p in patterns
    )


def canonical_body(
    body: Any, *, ignore: Sequence[str] = DEFAULT_IGNORED_PATHS, scrub: Scrubber | None = None
) -> str:
    """Sorted-key compact JSON of a body with volatile paths removed (text stays text)."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body) if body.strip() else None
        except ValueError:
            return "text:" + (scrub.text(body) if scrub else body)
    if scrub is not None:
        body = scrub.data(body)
    body = drop_paths(body, ignore)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_key(
    method: str,
    url: str,
    body: Any,
    *,
    ignore: Sequence[str] = DEFAULT_IGNORED_PATHS,
    scrub: Scrubber | None = None,
) -> tuple[str, str, str]:
    scrub = scrub or Scrubber()
    return (
        method.upper(),
        normalise_url(url, scrub),
        canonical_body(body, ignore=ignore, scrub=scrub),
    )


class Replayer:
    """Serves recorded exchanges as an ``httpx`` transport; one per case run."""

    def __init__(
        self,
        exchanges: Iterable[RecordedExchange],
        *,
        ignore_paths: Sequence[str] = DEFAULT_IGNORED_PATHS,
        scrub: Scrubber | None = None,
        on_body_mismatch: str = "fail",
    ) -> None:
        self.ignore_paths = tuple(ignore_paths)
        self.scrub = scrub or Scrubber()
        self.on_body_mismatch = on_body_mismatch  # "fail" | "replay"
        self._queues: dict[tuple[str, str, str], deque[RecordedExchange]] = defaultdict(deque)
        self._last: dict[tuple[str, str, str], RecordedExchange] = {}
        self._endpoints: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
        for exchange in exchanges:
            key = self._key(exchange.method, exchange.url, exchange.request_body)
            self._queues[key].append(exchange)
            if key not in self._endpoints[key[:2]]:
                self._endpoints[key[:2]].append(key)
        self.unrecorded: list[UnrecordedCall] = []
        # With on_body_mismatch="replay": calls answered from a recording of the same endpoint
        # although their body differs, with both bodies ({method, url, step_id, recorded_body,
        # body}); the diff shows what the proposal would have sent differently.
        self.changed_requests: list[dict[str, Any]] = []
        self._changed_keys: set[tuple[str, str, str]] = set()
        self._unrecorded_keys: set[tuple[str, str, str]] = set()
        self.served = 0

    def _key(self, method: str, url: str, body: Any) -> tuple[str, str, str]:
        return request_key(method, url, body, ignore=self.ignore_paths, scrub=self.scrub)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body: Any = request.content
        key = self._key(request.method, str(request.url), body)
        queue = self._queues.get(key)
        if queue:
            exchange = queue.popleft()
            self._last[key] = exchange
        elif key in self._last:
            exchange = self._last[key]
        elif self.on_body_mismatch == "replay" and self._endpoints.get(key[:2]):
            exchange = self._same_endpoint(key, request)
        else:
            url = self.scrub.url(str(request.url))
            call = UnrecordedCall(
                method=request.method,
                url=url,
                body=_json_or_text(request.content, self.scrub),
                step_id=request.headers.get("x-loom-step-id"),
            )
            if key not in self._unrecorded_keys:  # retries of one request are listed once
                self._unrecorded_keys.add(key)
                self.unrecorded.append(call)
            raise UnrecordedRequest(request.method, url, request=request)
        self.served += 1
        if exchange.error and exchange.status is None:
            raise httpx.ConnectError(exchange.error, request=request)
        return _response(exchange, request)

    def _same_endpoint(self, key: tuple[str, str, str], request: httpx.Request) -> RecordedExchange:
        """Answer from the endpoint's next unused recording (else its last) and note the change."""
        keys = self._endpoints[key[:2]]
        used = next((k for k in keys if self._queues[k]), None)
        if used is not None:
            exchange = self._queues[used].popleft()
            self._last[used] = exchange
        else:
            used = keys[-1]
            exchange = self._last.get(used) or self._queues[used][0]
        self._last[key] = exchange  # an identical retry gets the same answer
        if key not in self._changed_keys:
            self._changed_keys.add(key)
            self.changed_requests.append(
                {
                    "method": request.method,
                    "url": self.scrub.url(str(request.url)),
                    "step_id": request.headers.get("x-loom-step-id"),
                    "recorded_body": exchange.request_body,
                    "body": _json_or_text(request.content, self.scrub),
                }
            )
        return exchange


def _response(exchange: RecordedExchange, request: httpx.Request) -> httpx.Response:
    headers = dict(exchange.response_headers)
    body = exchange.response_body
    if isinstance(body, str) and "json" not in headers.get("content-type", ""):
        content = body.encode()
    elif body is None:
        content = b""
    else:
        content = json.dumps(body, ensure_ascii=False).encode()
        headers.setdefault("content-type", "application/json")
    return httpx.Response(
        status_code=exchange.status or 200, headers=headers, content=content, request=request
    )


def _json_or_text(content: bytes, scrub: Scrubber) -> Any:
    if not content:
        return None
    text = content.decode("utf-8", "replace")
    try:
        return scrub.data(json.loads(text))
    except ValueError:
        return scrub.text(text[:2000])

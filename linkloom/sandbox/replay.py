"""The replay: answers HTTP requests from a fixture case's recorded exchanges.

``Replayer`` is the engine's ``HttpPort`` for http steps (``send``) and, behind
``transport()``, an httpx transport for every other client (the llm step); both keep one
account of what was asked and answered.

Matching key: method, normalised URL (lower-case scheme and host, default port dropped, query
sorted, credentials scrubbed) and the canonical JSON body (sorted keys, credentials scrubbed, the
ignored volatile paths removed), taken from what the engine records of the request. Headers never
take part. Identical requests replay their recordings in recorded order; once those run out, the
last recording answers again. A request with no recording of its own is answered by the first
matching stub (``sandbox/stubs.py``), else (with ``on_body_mismatch="replay"``) by a recording of
the same method and URL ("sent differently").

A request nothing answers fails as "unrecorded request: POST https://…" (``CallFailed`` of kind
``unrecorded`` through the port, ``UnrecordedRequest`` through httpx): non-retryable, the http
step turns it into a failed step, and it is collected in ``Replayer.unrecorded`` so the diff can
list what the proposal "would have called".
"""

from __future__ import annotations

import fnmatch
import functools
import json
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from linkloom.engine.models import RECORD_EXTENSION, InboundResponse, OutboundRequest
from linkloom.engine.ports import DEFAULT_HEADERS, CallFailed
from linkloom.sandbox.fixtures import RecordedExchange
from linkloom.sandbox.scrub import Scrubber
from linkloom.sandbox.stubs import Stub, http_response

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


@dataclass(frozen=True, slots=True, kw_only=True)
class SentRequest:
    """A request one run sent in the sandbox, as it would be recorded, and how it was answered.

    ``answer``: ``recording`` (its own recording), ``endpoint`` (a recording of the same method
    and URL with another body: "sent differently"), ``stub`` (a stub of the proposal) or
    ``unrecorded`` (nothing could answer; the step failed).
    """

    step_id: str | None
    item_index: int | None = None
    method: str
    url: str
    body: Any = None
    answer: str
    stub: str | None = None
    recorded_body: Any = None  # for ``endpoint``: the body of the recording that answered

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.method, self.url, json.dumps(self.body, sort_keys=True, default=str))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step_id": self.step_id,
            "item_index": self.item_index,
            "method": self.method,
            "url": self.url,
            "body": self.body,
            "answer": self.answer,
        }
        if self.stub is not None:
            out["stub"] = self.stub
        if self.answer == "endpoint":
            out["recorded_body"] = self.recorded_body
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SentRequest:
        index = data.get("item_index")
        return cls(
            step_id=data.get("step_id"),
            item_index=index if isinstance(index, int) else None,
            method=str(data.get("method") or "GET"),
            url=str(data.get("url") or ""),
            body=data.get("body"),
            answer=str(data.get("answer") or "recording"),
            stub=data.get("stub"),
            recorded_body=data.get("recorded_body"),
        )


class Replayer:
    """Serves recorded exchanges (then stubs) to the http step's port and to httpx; one per
    case run.

    Requests are matched on what the engine records of them (``OutboundRequest.record``, or the
    ``loom.record`` extension through httpx: the URL with its query, the body actually sent,
    values derived from secrets masked), so a replay compares like with like; requests without
    it (other clients) are matched on their URL and content. Every request is logged in
    ``requests``.
    """

    def __init__(
        self,
        exchanges: Iterable[RecordedExchange],
        *,
        ignore_paths: Sequence[str] = DEFAULT_IGNORED_PATHS,
        scrub: Scrubber | None = None,
        on_body_mismatch: str = "fail",
        stubs: Sequence[Stub] = (),
    ) -> None:
        self.ignore_paths = tuple(ignore_paths)
        self.scrub = scrub or Scrubber()
        self.on_body_mismatch = on_body_mismatch  # "fail" | "replay"
        self.stubs = tuple(stubs)
        self._queues: dict[tuple[str, str, str], deque[RecordedExchange]] = defaultdict(deque)
        self._last: dict[tuple[str, str, str], RecordedExchange] = {}
        self._endpoints: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
        for exchange in exchanges:
            key = self._key(exchange.method, exchange.url, exchange.request_body)
            self._queues[key].append(exchange)
            if key not in self._endpoints[key[:2]]:
                self._endpoints[key[:2]].append(key)
        self.requests: list[SentRequest] = []
        self.unrecorded: list[UnrecordedCall] = []
        self._unrecorded_keys: set[tuple[str, str, str]] = set()
        self._by_endpoint: set[tuple[str, str, str]] = set()  # answered by another recording
        self.served = 0

    def _key(self, method: str, url: str, body: Any) -> tuple[str, str, str]:
        return request_key(method, url, body, ignore=self.ignore_paths, scrub=self.scrub)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer a request that came through httpx (``transport()``: the llm step, tests)."""
        origin = request.extensions.get(RECORD_EXTENSION)
        record = origin.get("record") if isinstance(origin, Mapping) else None
        step_id: str | None
        item_index: int | None
        if isinstance(origin, Mapping) and record is not None:
            method, url, body = record.method, record.url, record.request_body
            step_id = origin.get("step_id")
            item_index = origin.get("item_index")
        else:
            method, url, body = request.method, str(request.url), request.content
            step_id = request.headers.get("x-loom-step-id")
            item_index = None
        served = self._serve(method, url, body, step_id=step_id, item_index=item_index)
        if isinstance(served, UnrecordedCall):
            raise UnrecordedRequest(served.method, served.url, request=request)
        if isinstance(served, _Stubbed):
            return served.stub.answer(request, body=served.body)
        if served.error and served.status is None:
            raise httpx.ConnectError(served.error, request=request)
        return _response(served, request)

    async def send(self, request: OutboundRequest) -> InboundResponse:
        """Answer the http step's request (the engine's ``HttpPort``), matched on its record."""
        record = request.record
        served = self._serve(
            record.method,
            record.url,
            record.request_body,
            step_id=request.step_id,
            item_index=request.item_index,
        )
        if isinstance(served, UnrecordedCall):
            raise CallFailed(
                f"unrecorded request: {served.describe()}", kind="unrecorded", retryable=False
            )
        if isinstance(served, _Stubbed):
            answer = served.stub.reply(
                method=request.method,
                url=request.url,
                headers=wire_headers(request),
                body=served.body,
            )
        elif served.error and served.status is None:
            raise CallFailed(served.error)
        else:
            answer = _response(served, None)
        return _inbound(answer, request.max_body)

    def _serve(
        self, method: str, url: str, body: Any, *, step_id: str | None, item_index: int | None
    ) -> RecordedExchange | _Stubbed | UnrecordedCall:
        """Which recording (or stub) answers a request, logged in ``requests``; or the
        unrecorded call, collected in ``unrecorded``."""
        key = self._key(method, url, body)
        shown_url = self.scrub.url(url)
        shown_body = _plain_body(body, self.scrub)

        def log(answer: str, **extra: Any) -> None:
            self.requests.append(
                SentRequest(
                    step_id=step_id, item_index=item_index, method=method.upper(),
                    url=shown_url, body=shown_body, answer=answer, **extra,
                )
            )  # fmt: skip

        queue = self._queues.get(key)
        if queue:
            exchange = queue.popleft()
            self._last[key] = exchange
            log("recording")
        elif key in self._last:  # a repeat: the same answer, the same way
            exchange = self._last[key]
            if key in self._by_endpoint:
                log("endpoint", recorded_body=exchange.request_body)
            else:
                log("recording")
        elif (stub := self._stub(method, key[1])) is not None:
            log("stub", stub=stub.label)
            self.served += 1
            return _Stubbed(stub=stub, body=shown_body)
        elif self.on_body_mismatch == "replay" and self._endpoints.get(key[:2]):
            exchange = self._same_endpoint(key)
            self._by_endpoint.add(key)
            log("endpoint", recorded_body=exchange.request_body)
        else:
            log("unrecorded")
            call = UnrecordedCall(
                method=method.upper(), url=shown_url, body=shown_body, step_id=step_id
            )
            if key not in self._unrecorded_keys:  # retries of one request are listed once
                self._unrecorded_keys.add(key)
                self.unrecorded.append(call)
            return call
        self.served += 1
        return exchange

    def _stub(self, method: str, url: str) -> Stub | None:
        return next((s for s in self.stubs if s.matches(method, url)), None)

    def _same_endpoint(self, key: tuple[str, str, str]) -> RecordedExchange:
        """Answer from the endpoint's next unused recording (else its last)."""
        keys = self._endpoints[key[:2]]
        used = next((k for k in keys if self._queues[k]), None)
        if used is not None:
            exchange = self._queues[used].popleft()
            self._last[used] = exchange
        else:
            used = keys[-1]
            exchange = self._last.get(used) or self._queues[used][0]
        self._last[key] = exchange  # an identical retry gets the same answer
        return exchange


@dataclass(frozen=True, slots=True)
class _Stubbed:
    stub: Stub
    body: Any  # the request's body as the stub's templates see it


def _response(exchange: RecordedExchange, request: httpx.Request | None) -> httpx.Response:
    return http_response(
        status=exchange.status or 200,
        headers=exchange.response_headers,
        body=exchange.response_body,
        request=request,
    )


def _plain_body(body: Any, scrub: Scrubber) -> Any:
    """A body as JSON data (scrubbed), or text when it is not JSON; None when empty."""
    if isinstance(body, bytes | bytearray):
        if not body:
            return None
        text = bytes(body).decode("utf-8", "replace")
        try:
            return scrub.data(json.loads(text))
        except ValueError:
            return scrub.text(text[:2000])
    return scrub.data(body)


def _inbound(answer: httpx.Response, max_body: int) -> InboundResponse:
    """An answer built as for httpx (its headers and body exactly so), as the port returns it."""
    headers = dict(answer.headers)
    declared = headers.get("content-length")
    oversized = bool(declared and declared.isdigit() and int(declared) > max_body)
    if oversized or len(answer.content) > max_body:
        return InboundResponse(status=answer.status_code, headers=headers, too_large=True)
    return InboundResponse(status=answer.status_code, headers=headers, body=answer.content)


def wire_headers(request: OutboundRequest) -> dict[str, str]:
    """The headers ``request`` carries on the wire, as httpx listed them (lower-case names, a
    name set twice joined with ", "): what a stub's templates see as ``request.headers``."""
    headers = httpx.Headers(DEFAULT_HEADERS)
    headers.update(request.headers)  # as httpx's client merged its own under a request's
    built = httpx.Request(
        request.method, request.url, headers=headers, content=request.content or None
    )
    return dict(built.headers)

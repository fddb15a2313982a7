"""The ``http`` step: call a user backend (or any HTTP API) following the wire contract.

Request: the rendered url/query/headers; for methods other than GET and HEAD, the rendered
``body`` if the step declares one, else the task envelope (run, flow, step, attempt, idempotency
key, inputs, upstream outputs, item, index, callback); GET and HEAD send no body. Headers carry
``Idempotency-Key`` (stable across retries), ``X-Loom-*`` metadata and an HMAC signature of the
body actually sent. Response: ``{"status": "SUCCESS"|"FAILED", "output", "logs", "error"}`` or
any other JSON as the output; ``mode: async`` backends answer 202 and call back later.
Failures are returned as ``StepError`` data: connection errors, timeouts, 5xx and 429 are
retryable (429/503 honour ``Retry-After``); other statuses, oversized and non-JSON bodies are not.
A 503 ``{"code": "in_progress"}`` (the SDK's answer while an earlier delivery of the same
Idempotency-Key still runs) is no failure: the step asks again with backoff, up to its timeout.

Every exchange is recorded in ``ctx.exchanges`` as it was sent: the full URL with its query
string, the body (none for GET/HEAD) and the headers, with values rendered from secrets already
masked (the worker also masks secret values before persisting). Requests go out through the
``HttpPort`` of ``ctx.services`` (aiohttp in production, the replay in the sandbox) carrying
the same record, so the sandbox's replay matches what was recorded.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from linkloom import metrics, signing, tracing
from linkloom.engine import callbacks, rendering, transport
from linkloom.engine.models import Exchange, OutboundRequest, StepError, StepResult
from linkloom.engine.ports import CallFailed, HttpPort, StepContext, StepServices
from linkloom.flows import taint

MAX_RECORDED_TEXT = 1_000_000
# A backend's "still processing this Idempotency-Key" answer: polled, not counted as an attempt.
IN_PROGRESS = "in_progress"
IN_PROGRESS_STATE = "in_progress"  # the poll window in the step's durable state
IN_PROGRESS_FIRST_POLL = 0.5
IN_PROGRESS_MAX_POLL = 30.0
BODILESS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    method: str
    url: str
    query: dict[str, str]
    headers: dict[str, str]
    content: bytes
    record: Exchange  # what is recorded of it: secrets masked, no body for GET/HEAD
    step_id: str
    item_index: int | None


class HttpExecutor:
    type_name: ClassVar[str] = "http"

    def __init__(self, *, per_host_limit: int = 32) -> None:
        self.per_host_limit = per_host_limit
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def _semaphore(self, url: str) -> asyncio.Semaphore:
        scheme, netloc = _origin(url)
        key = f"{scheme}://{netloc}"
        sem = self._hosts.get(key)
        if sem is None:
            sem = self._hosts[key] = asyncio.Semaphore(self.per_host_limit)
        return sem

    async def execute(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        try:
            request = self._render(ctx, step)
        except rendering.TemplateError as exc:
            return StepResult(error=StepError(kind="template", message=str(exc)))
        except (TypeError, ValueError, httpx.InvalidURL) as exc:
            return StepResult(error=StepError(kind="config", message=str(exc)))
        url = request.url
        if not url.startswith(("http://", "https://")):
            return StepResult(error=_not_http(url, step.url))
        exchange = request.record
        started = time.perf_counter()
        try:
            async with self._semaphore(url):
                status, resp_headers, body, error = await self._send(ctx, request)
        finally:
            duration = (time.perf_counter() - started) * 1000
        if error is None or error.kind not in ("config", "unrecorded"):  # a call went out
            metrics.backend_response(host=_origin(url)[1], status_code=status)
        if error is not None:
            ctx.exchanges.append(
                _with(exchange, duration_ms=duration, error=error.message, status=status,
                      response_headers=resp_headers)
            )  # fmt: skip
            return StepResult(error=error, exchanges=tuple(ctx.exchanges))
        assert status is not None
        parsed, parse_error = _parse(body, resp_headers)
        ctx.exchanges.append(
            _with(exchange, status=status, response_headers=resp_headers, duration_ms=duration,
                  response_body=parsed if parse_error is None else _text(body))
        )  # fmt: skip
        done = tuple(ctx.exchanges)
        status_error = _status_error(step, status, resp_headers, parsed, url)
        if status_error is not None:
            if _in_progress(status, parsed):
                return _not_yet(ctx, status_error, done)
            return StepResult(error=status_error, exchanges=done)
        if parse_error is not None:
            return StepResult(error=parse_error, exchanges=done)
        if step.mode == "async" and status == 202:
            hb = step.heartbeat_timeout
            wait = hb if hb is not None else ctx.timeout
            return StepResult(
                wait_for_callback=True,
                callback_deadline=ctx.services.clock.now() + timedelta(seconds=wait),
                state={**ctx.state, "callback": True, "heartbeat_timeout": wait},
                exchanges=done,
            )
        result = callbacks.read_result(parsed)
        if result.error is not None:  # retried per the policy when the answer says retryable
            result = replace(result, error=replace(result.error, status=status))
        return replace(result, exchanges=done)

    def _render(self, ctx: StepContext, step: Any) -> _Request:
        tctx = ctx.template_context()
        url = taint.text(rendering.render(step.url, tctx))
        query = {k: _str(v) for k, v in (rendering.render(step.query, tctx) or {}).items()}
        user_headers = {k: _str(v) for k, v in (rendering.render(step.headers, tctx) or {}).items()}
        callback = None
        if step.mode == "async":
            step_run_id, _, attempt = ctx.attempt_id.rpartition(".")
            token = callbacks.make_token(
                ctx.services.signing_key, step_run_id=step_run_id, attempt=int(attempt or 0)
            )
            # The attempt's credential: sent for real, recorded (and shown to viewers) as ***.
            callback = taint.mark(callbacks.callback_urls(ctx.services.public_url, token))
        payload: Any
        if step.method in BODILESS:
            payload = None
        elif step.body is not None:
            payload = rendering.render(step.body, tctx)
        else:
            deps = step.depends_on or list(ctx.upstream)
            payload = {
                "run_id": ctx.run.id,
                "flow_id": ctx.run.flow_id,
                "flow_version": ctx.run.version,
                "step_id": step.id,
                "attempt": ctx.attempt,
                "idempotency_key": ctx.idempotency_key,
                "inputs": ctx.run.inputs,
                "upstream": {
                    sid: {"output": v.get("output"), "outputs": v.get("outputs") or {}}
                    for sid, v in ctx.upstream.items()
                    if sid in deps
                },
                "item": ctx.item,
                "index": ctx.index,
                "callback": callback,
            }
        content = (
            b""
            if payload is None
            else json.dumps(payload, separators=(",", ":"), default=str).encode()
        )
        headers = {"Content-Type": "application/json", **user_headers} if content else user_headers
        headers.update(
            {
                "Idempotency-Key": ctx.idempotency_key,
                "X-Loom-Run-Id": ctx.run.id,
                "X-Loom-Flow-Id": ctx.run.flow_id,
                "X-Loom-Flow-Version": str(ctx.run.version),
                "X-Loom-Step-Id": step.id,
                "X-Loom-Attempt": str(ctx.attempt),
            }
        )
        headers.update(tracing.headers())  # W3C traceparent of the attempt span (if tracing)
        if callback is not None:
            headers["X-Loom-Callback-Url"] = callback["url"]
            headers["X-Loom-Heartbeat-Url"] = callback["heartbeat_url"]
        if ctx.services.signing_key:
            headers.update(signing.sign(ctx.services.signing_key, content))
        ctx.sent_secrets |= taint.marked_texts([url, query, user_headers, payload])
        record = Exchange(
            method=step.method,
            url=recorded_url(url, query),
            request_headers=taint.mask(headers),
            request_body=taint.mask(payload),
        )
        return _Request(
            method=step.method, url=url, query=query, headers=headers, content=content,
            record=record, step_id=step.id, item_index=ctx.index,
        )  # fmt: skip

    async def _send(
        self, ctx: StepContext, request: _Request
    ) -> tuple[int | None, dict[str, str], bytes, StepError | None]:
        limit = ctx.services.max_response_bytes
        _ascii_only(request.headers)  # httpx's rule, kept: another header fails the attempt
        try:
            answer = await _port(ctx.services).send(
                OutboundRequest(
                    method=request.method,
                    url=_sent_url(request.url, request.query),
                    headers=request.headers,
                    content=request.content,
                    record=request.record,
                    step_id=request.step_id,
                    item_index=request.item_index,
                    max_body=limit,
                )
            )
        except httpx.InvalidURL as exc:
            return None, {}, b"", StepError(kind="config", message=f"invalid url: {exc}")
        except CallFailed as exc:
            step: Any = ctx.step
            return exc.status, exc.headers, b"", _call_error(exc, _where(request.url, step.url))
        except (transport.UnreadableAnswer, httpx.DecodingError) as exc:  # the backend's fault
            why = str(exc)
            if isinstance(exc, httpx.DecodingError):
                why = f"its body does not decode as its Content-Encoding says ({why})"
            message = f"the backend's answer could not be read: {why}"
            return None, {}, b"", StepError(kind="bad_response", message=message)
        if answer.too_large:
            declared = answer.headers.get("content-length")
            size = int(declared) if declared and declared.isdigit() else 0
            return (
                answer.status,
                answer.headers,
                b"",
                _too_large(limit, size if size > limit else None),
            )
        return answer.status, answer.headers, answer.body, None


def _port(services: StepServices) -> HttpPort:
    if services.outbound is not None:
        return services.outbound
    return transport.HttpxPort(services.http)


def _call_error(exc: CallFailed, where: str) -> StepError:
    """How a request that got no complete answer reads in the attempt's error; ``where`` is
    ``_where``'s."""
    if exc.kind == "timeout":
        message = f"HTTP timeout calling {where}: {exc.detail}"
    elif exc.kind == "config":
        message = f"invalid url {where}: {exc.detail}"
    elif exc.kind == "unrecorded":
        message = exc.detail
    else:
        message = f"connection to {where} failed: {exc.detail}"
    return StepError(kind=exc.kind, message=message, retryable=exc.retryable)


def _where(url: str, template: str) -> str:
    """The URL a call went to, as its error names it: scheme, host, port and path, never the
    userinfo, query string or fragment (where credentials and API keys travel).

    A URL rendered from a secret (``?token={{ secrets.key | upper }}``) is marked as a whole;
    then it is named only as far as the step's ``url`` spells it out before its first template
    tag (scheme, host and port; the path too when it is literal), else as "the backend".
    """
    where = transport.location(url)
    if not taint.is_marked(url):
        return where
    literal = transport.location(_literal_prefix(template), path=True, rest=True)
    for shown in (where, transport.location(url, path=False)):
        if literal.startswith(shown):
            return shown
    return "the backend"


def _literal_prefix(template: str) -> str:
    """The text of a template before its first tag: what every rendering of it starts with."""
    return template.split("{{", 1)[0].split("{%", 1)[0]


def _not_http(url: str, template: str) -> StepError:
    """The error of a URL that is not http(s): it names the scheme, never the whole URL."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        got = "; it has no scheme"
    elif taint.is_marked(url) and not _literal_prefix(template).startswith(f"{scheme}://"):
        got = "; it has another scheme"  # one rendered from a secret
    else:
        got = f", not {scheme}://"
    return StepError(kind="config", message=f"url must start with http:// or https://{got}")


def _ascii_only(headers: dict[str, str]) -> None:
    """Raise ``UnicodeEncodeError`` for a header name or value that is not ASCII, as httpx did
    when it built the request (the attempt fails as the executor's internal error)."""
    for name, value in headers.items():
        if not name.isascii():
            name.encode("ascii")
        if not value.isascii():
            value.encode("ascii")


def _with_query(url: str, query: dict[str, str]) -> httpx.URL:
    """``url`` with ``query`` added to the query string it already has (httpx's ``params=``
    would replace it)."""
    return httpx.URL(url).copy_merge_params(query) if query else httpx.URL(url)


def _sent_url(url: str, query: dict[str, str]) -> str:
    """The URL to send, as httpx's client made it: one without a host became its path."""
    if taint.is_marked(url) or any(map(taint.is_marked, query.values())):
        return _sent_text(url, query)  # never kept in the cache below
    return _cached_sent_text(url, tuple(query.items()))


def recorded_url(url: str, query: dict[str, str]) -> str:
    """The URL as sent, values rendered from secrets masked (a URL built from one whole)."""
    shown = taint.MASK if taint.is_marked(url) else str(url)
    return _cached_text(shown, tuple((str(k), str(v)) for k, v in taint.mask(query).items()))


def _sent_text(url: str, query: dict[str, str]) -> str:
    merged = _with_query(url, query)
    if not merged.is_absolute_url:
        return "/" + merged.raw_path.decode("ascii").lstrip("/")
    return str(merged)


# Steps send the same few URLs over and over; parsing one with httpx costs ~15 µs.
@functools.lru_cache(maxsize=1024)
def _cached_sent_text(url: str, query: tuple[tuple[str, str], ...]) -> str:
    return _sent_text(url, dict(query))


@functools.lru_cache(maxsize=1024)
def _cached_text(url: str, query: tuple[tuple[str, str], ...]) -> str:
    return str(_with_query(url, dict(query)))


def _origin(url: str) -> tuple[str, str]:
    """The URL's scheme and netloc."""
    if taint.is_marked(url):
        return _split_origin(url)
    return _cached_origin(url)


def _split_origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


_cached_origin = functools.lru_cache(maxsize=1024)(_split_origin)


def _with(exchange: Exchange, **changes: Any) -> Exchange:
    return replace(exchange, **changes)


def _str(value: Any) -> str:
    """A query or header value as text; one rendered from a secret stays marked."""
    text = _text_of(value)
    return taint.SecretStr(text) if taint.is_marked(value) else text


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _too_large(limit: int, declared: int | None) -> StepError:
    size = f"{declared} bytes" if declared else "more"
    return StepError(
        kind="response_too_large",
        message=f"the response body is {size}; the limit is {limit} bytes "
        "(LOOM_ENGINE__MAX_RESPONSE_BYTES)",
    )


def _text(body: bytes) -> str:
    return body[:MAX_RECORDED_TEXT].decode("utf-8", errors="replace")


def _parse(body: bytes, headers: dict[str, str]) -> tuple[Any, StepError | None]:
    if not body.strip():
        return None, None
    try:
        return json.loads(body), None
    except ValueError:
        pass
    ctype = headers.get("content-type", "")
    if ctype.startswith("text/plain"):
        return body.decode("utf-8", errors="replace"), None
    preview = body[:200].decode("utf-8", errors="replace")
    return None, StepError(
        kind="bad_response",
        message=f"the backend answered non-JSON ({ctype or 'no content type'}): {preview!r}",
    )


def _status_error(
    step: Any, status: int, headers: dict[str, str], parsed: Any, url: str
) -> StepError | None:
    """The error of an answer whose status the step does not accept. It names the ``url`` sent
    to as ``_where`` does: no userinfo, query string or secret, as for a failed call."""
    expected = step.expected_status
    if expected is not None:
        if status in expected:
            return None
    elif 200 <= status < 300:
        return None
    retry_after = _retry_after(headers.get("retry-after"))
    retryable = status == 429 or status >= 500
    detail = ""
    if isinstance(parsed, dict):
        detail = str(parsed.get("error") or parsed.get("detail") or parsed.get("message") or "")
    message = f"HTTP {status} from {_where(url, step.url)}"
    if detail:
        message += f": {detail[:500]}"
    return StepError(
        kind="http_status",
        message=message,
        retryable=retryable,
        retry_after=retry_after,
        status=status,
    )


def _in_progress(status: int, parsed: Any) -> bool:
    """The backend is still running an earlier delivery of this Idempotency-Key (the SDK answers
    a second delivery so: 503 with ``{"code": "in_progress"}``)."""
    return status == 503 and isinstance(parsed, dict) and parsed.get("code") == IN_PROGRESS


def _not_yet(ctx: StepContext, answer: StepError, exchanges: tuple[Exchange, ...]) -> StepResult:
    """Ask again later without using an attempt: the work is being done, not failing.

    Polls back off (0.5 s, 1 s, 2 s … at most 30 s, and never longer than a ``Retry-After``) for
    up to the step's timeout from the first such answer of this attempt; past it, the attempt
    fails as a timeout, retried by the step's policy like any other.
    """
    now = ctx.services.clock.now()
    window = ctx.state.get(IN_PROGRESS_STATE)
    if not isinstance(window, dict) or window.get("attempt") != ctx.attempt:
        window = {"attempt": ctx.attempt, "since": now.isoformat(), "polls": 0}
    since = datetime.fromisoformat(str(window["since"]))
    waited = (now - since).total_seconds()
    remaining = ctx.timeout - waited
    if remaining <= 0:
        return StepResult(
            error=StepError(
                kind="timeout",
                message="the backend was still processing this Idempotency-Key after "
                f"{waited:.0f}s of asking (the step's timeout is {ctx.timeout:g}s): "
                f"{answer.message}",
                retryable=True,
                status=answer.status,
            ),
            exchanges=exchanges,
        )
    polls = int(window.get("polls", 0))
    delay = min(IN_PROGRESS_FIRST_POLL * 2**polls, IN_PROGRESS_MAX_POLL, remaining)
    if answer.retry_after is not None:
        delay = min(delay, max(answer.retry_after, IN_PROGRESS_FIRST_POLL))
    if polls == 0:
        ctx.log("the backend is still processing this Idempotency-Key; asking again until it "
                f"answers (up to the step's timeout, {ctx.timeout:g}s)")  # fmt: skip
    state = {**ctx.state, IN_PROGRESS_STATE: {**window, "polls": polls + 1}}
    return StepResult(
        suspend_until=now + timedelta(seconds=delay), state=state, exchanges=exchanges
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

"""Framework-neutral handling of task deliveries; the FastAPI and Flask adapters wrap it.

For each delivery the dispatcher: verifies ``X-Loom-Timestamp``/``X-Loom-Signature`` (401 when
wrong), parses the ``TaskRequest`` (400 when not JSON), de-duplicates by ``Idempotency-Key``
(a stored reply is returned without running the handler; a delivery still in progress gets 503),
runs the handler and maps the outcome:

* a plain value → 200 ``{"status": "SUCCESS", "output": value, "logs": [...]}``
* a ``TaskResult`` → 200 with that status/output/error
* ``Retryable`` raised → 503 (with ``Retry-After``), so the server retries the attempt
* any other exception → 200 ``{"status": "FAILED", "error": "<Type>: <message>"}``
* ``Deferred`` returned, or an ``async_task`` handler on a ``mode: async`` step → 202 at once;
  the work runs in the background with heartbeats and its result goes to the callback URL.

Only SUCCESS replies are stored for de-duplication: a failed attempt is retried by the server
with the same key, and the handler must run again.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from linkloom import signing
from linkloom.sdk.callbacks import CallbackOutcome, CallbackSender
from linkloom.sdk.errors import Retryable
from linkloom.sdk.idempotency import IdempotencyStore, Reply
from linkloom.sdk.tasks import BadTaskRequest, Deferred, TaskRequest, TaskResult, as_result

log = logging.getLogger("linkloom.sdk")

Handler = Callable[..., Any]
ACCEPTED_BODY = {"status": "ACCEPTED"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRoute:
    """A handler and how to run it."""

    handler: Handler
    async_task: bool = False
    name: str = ""


class TaskDispatcher:
    """Verifies, parses, de-duplicates and runs task deliveries (see the module docstring).

    ``signing_key`` is the server's ``security.signing_key``. Verification can only be turned off
    explicitly (``verify_signatures=False``), for local development.
    """

    def __init__(
        self,
        *,
        signing_key: str | bytes | None,
        verify_signatures: bool = True,
        tolerance: float = signing.DEFAULT_TOLERANCE,
        idempotency: IdempotencyStore | None = None,
        claim_ttl: float = 300.0,
        async_claim_ttl: float = 3600.0,
        heartbeat_interval: float = 10.0,
        callbacks: CallbackSender | None = None,
    ) -> None:
        if verify_signatures and not signing_key:
            raise ValueError(
                "pass signing_key (the server's LOOM_SECURITY__SIGNING_KEY), or "
                "verify_signatures=False for local development only"
            )
        if not verify_signatures:
            log.warning("loom_signature_verification_disabled: accept unsigned tasks (dev only)")
        self.signing_key = signing_key
        self.verify_signatures = verify_signatures
        self.tolerance = tolerance
        self.idempotency = idempotency
        self.claim_ttl = claim_ttl
        self.async_claim_ttl = async_claim_ttl
        self.heartbeat_interval = heartbeat_interval
        self.callbacks = callbacks or CallbackSender(signing_key=signing_key)
        self._background: set[asyncio.Task[None]] = set()
        self._threads: set[threading.Thread] = set()

    # -- asyncio entry point (FastAPI) -------------------------------------------------------

    async def dispatch(self, route: TaskRoute, *, body: bytes, headers: Mapping[str, str]) -> Reply:
        early = self._admit(route, body, headers)
        if isinstance(early, Reply):
            return early
        request = early
        if route.async_task and request.is_async:
            return self._defer(request, route.handler, blocking=False)
        try:
            value = await _call(route.handler, request)
        except BaseException as exc:
            return self._fail(request, exc)
        if isinstance(value, Deferred):
            if value.work is not None and not request.is_async:
                try:
                    value = await _call(value.work, request)
                except BaseException as exc:
                    return self._fail(request, exc)
            else:
                return self._defer(request, value.work, blocking=False)
        return self._finish(request, as_result(value))

    async def drain(self) -> None:
        """Wait for background work (async steps) to finish: for tests and shutdown."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        for thread in list(self._threads):
            await asyncio.to_thread(thread.join)

    # -- blocking entry point (Flask, any WSGI server) ----------------------------------------

    def dispatch_blocking(
        self, route: TaskRoute, *, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        early = self._admit(route, body, headers)
        if isinstance(early, Reply):
            return early
        request = early
        if route.async_task and request.is_async:
            return self._defer(request, route.handler, blocking=True)
        try:
            value = _call_blocking(route.handler, request)
            if isinstance(value, Deferred):
                if value.work is None or request.is_async:
                    return self._defer(request, value.work, blocking=True)
                value = _call_blocking(value.work, request)
        except BaseException as exc:
            return self._fail(request, exc)
        return self._finish(request, as_result(value))

    def join(self, timeout: float | None = None) -> None:
        """Blocking twin of ``drain`` for the Flask adapter's background threads."""
        for thread in list(self._threads):
            thread.join(timeout)

    # -- shared steps ------------------------------------------------------------------------

    def _admit(
        self, route: TaskRoute, body: bytes, headers: Mapping[str, str]
    ) -> TaskRequest | Reply:
        if self.verify_signatures:
            assert self.signing_key is not None  # checked in __init__
            try:
                # The headers as received (not a dict), so a repeated signature is refused.
                signing.verify(self.signing_key, body, headers, tolerance=self.tolerance)
            except signing.SignatureError as exc:
                log.warning("loom_task_rejected: %s", exc)
                return _error_reply(401, "invalid_signature", f"invalid signature: {exc}")
        try:
            request = TaskRequest.from_http(body, headers)
        except BadTaskRequest as exc:
            return _error_reply(400, "bad_request", str(exc))
        key = request.idempotency_key
        if self.idempotency is not None and key:
            stored = self.idempotency.get(key)
            if stored is not None:
                return Reply(
                    status_code=stored.status_code,
                    body=stored.body,
                    headers={**stored.headers, "X-Loom-Idempotent-Replay": "true"},
                )
            # Background work holds its claim longer: a re-delivery must not start it twice.
            ttl = self.async_claim_ttl if route.async_task else self.claim_ttl
            if not self.idempotency.claim(key, ttl=ttl):
                stored = self.idempotency.get(key)  # it may have finished in between
                if stored is not None:
                    return Reply(
                        status_code=stored.status_code,
                        body=stored.body,
                        headers={**stored.headers, "X-Loom-Idempotent-Replay": "true"},
                    )
                reply = _error_reply(
                    503,
                    "in_progress",
                    f"a delivery with Idempotency-Key {key!r} is still being processed; "
                    "retry later",
                )
                return Reply(status_code=503, body=reply.body, headers={"Retry-After": "5"})
        return request

    def _finish(self, request: TaskRequest, result: TaskResult) -> Reply:
        reply = Reply(status_code=200, body=result.to_wire(extra_logs=request.logs))
        self._remember(request, result, reply)
        return reply

    def _fail(self, request: TaskRequest, exc: BaseException) -> Reply:
        if isinstance(exc, Retryable):
            self._forget(request)
            headers = {}
            if exc.retry_after is not None:  # HTTP wants whole seconds
                headers["Retry-After"] = str(max(0, math.ceil(exc.retry_after)))
            body = TaskResult.failed(exc.message, retryable=True).to_wire(extra_logs=request.logs)
            return Reply(status_code=503, body=body, headers=headers)
        if not isinstance(exc, Exception):
            self._forget(request)
            raise exc
        return self._finish(request, _failure(request, exc))

    def _remember(self, request: TaskRequest, result: TaskResult, reply: Reply) -> None:
        if self.idempotency is None or not request.idempotency_key:
            return
        if result.status == "SUCCESS":
            self.idempotency.put(request.idempotency_key, reply)
        else:
            self.idempotency.release(request.idempotency_key)

    def _forget(self, request: TaskRequest) -> None:
        if self.idempotency is not None and request.idempotency_key:
            self.idempotency.release(request.idempotency_key)

    def _defer(self, request: TaskRequest, work: Handler | None, *, blocking: bool) -> Reply:
        if not request.is_async:
            self._forget(request)
            return _error_reply(
                500,
                "not_async",
                "the handler deferred its work but the step is not 'mode: async' "
                "(no callback URL); declare mode: async in the flow",
            )
        accepted = Reply(status_code=202, body=dict(ACCEPTED_BODY))
        if work is None:
            # The application posts the result itself; a re-delivery must not start it twice.
            if self.idempotency is not None and request.idempotency_key:
                self.idempotency.put(request.idempotency_key, accepted)
            return accepted
        if blocking:
            thread = threading.Thread(
                target=self._complete_on_thread,
                args=(request, work),
                name=f"loom-task:{request.idempotency_key or request.step_id}",
                daemon=True,
            )
            self._threads.add(thread)
            thread.start()
        else:
            task = asyncio.create_task(
                self._complete_later(request, work),
                name=f"loom-task:{request.idempotency_key or request.step_id}",
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return accepted

    async def _complete_later(self, request: TaskRequest, work: Handler) -> None:
        async with self.callbacks.session() as client:
            heartbeats = None
            if request.heartbeat_url:
                heartbeats = asyncio.create_task(
                    self._heartbeats(request.heartbeat_url, client), name="loom-heartbeats"
                )
            try:
                try:
                    result = as_result(await _call(work, request))
                except Retryable as exc:
                    result = TaskResult.failed(exc.message, retryable=True)
                except Exception as exc:
                    result = _failure(request, exc)
            finally:
                if heartbeats is not None:
                    heartbeats.cancel()
                    await asyncio.gather(heartbeats, return_exceptions=True)
            assert request.callback_url is not None
            outcome = await self.callbacks.complete(
                request.callback_url, result, logs=request.logs, client=client
            )
        if outcome in (CallbackOutcome.DELIVERED, CallbackOutcome.ALREADY_COMPLETED):
            reply = Reply(status_code=200, body=result.to_wire(extra_logs=request.logs))
            self._remember(request, result, reply)
        else:
            self._forget(request)

    def _complete_on_thread(self, request: TaskRequest, work: Handler) -> None:
        try:
            asyncio.run(self._complete_later(request, work))
        finally:
            self._threads.discard(threading.current_thread())

    async def _heartbeats(self, url: str, client: httpx.AsyncClient) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            outcome = await self.callbacks.heartbeat(url, client=client)
            if outcome in (CallbackOutcome.ALREADY_COMPLETED, CallbackOutcome.REJECTED):
                log.warning("loom_heartbeat_refused: the attempt is over (%s)", outcome.value)
                return


@functools.lru_cache(maxsize=1024)
def _wants_request(handler: Handler) -> bool:
    return bool(inspect.signature(handler).parameters)


async def _call(handler: Handler, request: TaskRequest) -> Any:
    args = (request,) if _wants_request(handler) else ()
    if inspect.iscoroutinefunction(handler):
        return await handler(*args)
    # A blocking handler must not stall the event loop that serves other deliveries.
    value = await asyncio.to_thread(handler, *args)
    if inspect.isawaitable(value):
        value = await value
    return value


def _call_blocking(handler: Handler, request: TaskRequest) -> Any:
    args = (request,) if _wants_request(handler) else ()
    value = handler(*args)
    if inspect.isawaitable(value):
        value = asyncio.run(_await(value))
    return value


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _failure(request: TaskRequest, exc: Exception) -> TaskResult:
    log.exception(
        "loom_task_failed: step %s of run %s", request.step_id, request.run_id, exc_info=exc
    )
    message = str(exc) or "no message"
    return TaskResult.failed(f"{type(exc).__name__}: {message}")


def _error_reply(status_code: int, code: str, message: str) -> Reply:
    return Reply(status_code=status_code, body={"status": "FAILED", "error": message, "code": code})

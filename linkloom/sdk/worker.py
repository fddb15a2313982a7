"""``Worker``: run ``type: task`` steps in a process the server cannot reach (pull mode).

    from linkloom.sdk import Job, Worker

    worker = Worker("https://loom.example.com", token="loom_…", queues=["reports"])

    @worker.task("build-report")
    async def build_report(job: Job) -> dict:
        job.log("building")
        return {"rows": len(job.payload["items"])}

    worker.run_forever()          # until SIGINT/SIGTERM; or: await worker.run()

The worker registers (``POST /api/v1/workers``), long-polls its queues (``POST
/api/v1/queues/poll``), runs each task's handler (a coroutine function, or a plain function in
a thread), heartbeats every third of the lease while tasks run, and reports ``{status, output,
logs, error}`` (``POST /api/v1/tasks/{token}/result``). A handler that raises reports FAILED
with the exception's message (``linkloom.sdk.Retryable``: retried per the step's policy; any
other exception: failed for good, like a backend's FAILED); return a value to succeed. Tasks
are delivered at least once: a task whose worker died is handed out again with the same
``idempotency_key`` (``deliveries`` > 1), so make handlers idempotent by that key. Needs only
httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from linkloom.sdk.errors import Retryable

log = logging.getLogger(__name__)

Handler = Callable[["Job"], Any] | Callable[["Job"], Awaitable[Any]]


@dataclass(slots=True, kw_only=True)
class Job:
    """One task attempt handed to a handler."""

    token: str
    task: str
    queue: str
    payload: Any
    inputs: dict[str, Any]
    upstream: dict[str, Any]
    run_id: str
    flow_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    item: Any = None
    index: int | None = None
    deliveries: int = 1
    logs: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        """A log line stored with the step's attempt."""
        self.logs.append(str(message))

    @classmethod
    def from_task(cls, data: dict[str, Any]) -> Job:
        env = data.get("envelope") or {}
        return cls(
            token=data["token"],
            task=data["task"],
            queue=data["queue"],
            payload=env.get("payload"),
            inputs=env.get("inputs") or {},
            upstream=env.get("upstream") or {},
            run_id=env.get("run_id", ""),
            flow_id=env.get("flow_id", ""),
            step_id=env.get("step_id", ""),
            attempt=int(env.get("attempt") or 0),
            idempotency_key=env.get("idempotency_key", ""),
            item=env.get("item"),
            index=env.get("index"),
            deliveries=int(data.get("deliveries") or 1),
        )


class Worker:
    """A pull-mode worker for the named ``queues`` of one Link Loom server."""

    def __init__(
        self,
        server_url: str,
        *,
        queues: list[str],
        token: str | None = None,
        worker_id: str | None = None,
        concurrency: int = 4,
        version: str = "",
        poll_wait: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not queues:
            raise ValueError("a worker needs at least one queue")
        self.server_url = server_url.rstrip("/")
        self.queues = list(queues)
        self.token = token
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}-{uuid.uuid4().hex[:8]}"
        self.concurrency = max(1, concurrency)
        self.version = version or _sdk_version()
        self.poll_wait = poll_wait
        self._transport = transport
        self.handlers: dict[str, Handler] = {}
        self.heartbeat_interval = 10.0
        self.completed = 0
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._slot = asyncio.Event()
        self._http: httpx.AsyncClient | None = None

    # ---- handlers ----------------------------------------------------------------------
    def task(self, name: str) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of task ``name``."""

        def register(fn: Handler) -> Handler:
            self.handlers[name] = fn
            return fn

        return register

    def handle(self, name: str, fn: Handler) -> None:
        self.handlers[name] = fn

    # ---- lifecycle ---------------------------------------------------------------------
    def run_forever(self) -> None:
        """Run until SIGINT or SIGTERM, then stop cleanly (in-flight tasks finish)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._stopping.set)
            await self.run()

        asyncio.run(main())

    async def run(self) -> None:
        """Register, then poll and execute until ``stop()``."""
        headers = {"User-Agent": f"loom-worker/{self.version}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.AsyncClient(
            base_url=self.server_url + "/api/v1",
            headers=headers,
            timeout=httpx.Timeout(30.0, read=self.poll_wait + 30.0),
            transport=self._transport,
        )
        try:
            await self._register()
            beats = asyncio.create_task(self._heartbeats(), name="loom-worker-heartbeats")
            try:
                await self._poll_loop()
                if self._inflight:
                    await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            finally:
                beats.cancel()
                await asyncio.gather(beats, return_exceptions=True)
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete(f"/workers/{self.worker_id}")
        finally:
            await self._http.aclose()
            self._http = None

    def stop(self) -> None:
        """Stop polling; tasks in flight finish and report, then ``run()`` returns."""
        self._stopping.set()

    # ---- internals ---------------------------------------------------------------------
    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "the worker is not running"
        return self._http

    async def _register(self) -> None:
        body = {
            "id": self.worker_id,
            "host": self.host,
            "queues": self.queues,
            "version": self.version,
        }
        for delay in _backoff():
            try:
                response = await self.http.post("/workers", json=body)
                response.raise_for_status()
                break
            except httpx.HTTPError as exc:
                if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
                    raise
                log.warning("worker registration failed (%s); retrying in %.1fs", exc, delay)
                if await self._sleep(delay):
                    return
        data = response.json()
        self.heartbeat_interval = float(data.get("heartbeat_interval") or 10.0)
        log.info("worker %s registered for queues %s", self.worker_id, self.queues)

    async def _poll_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                self._slot.clear()
                await _first(self._slot.wait(), self._stopping.wait())
                continue
            body = {
                "worker_id": self.worker_id,
                "queues": self.queues,
                "max_tasks": free,
                "wait": self.poll_wait,
            }
            poll = asyncio.ensure_future(self.http.post("/queues/poll", json=body))
            await _first(poll, self._stopping.wait())
            if not poll.done():  # stopping: a task it took would wait for its lease to expire
                poll.cancel()
                await asyncio.gather(poll, return_exceptions=True)
                return
            try:
                response = poll.result()
                if response.status_code == 404:
                    await self._register()
                    continue
                response.raise_for_status()
                failures = 0
            except httpx.HTTPError as exc:
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("poll failed (%s); retrying in %.1fs", exc, delay)
                await self._sleep(delay)
                continue
            for item in response.json().get("tasks", []):
                job = Job.from_task(item)
                self._inflight[job.token] = asyncio.create_task(
                    self._execute(job), name=f"loom-task:{job.task}"
                )

    async def _execute(self, job: Job) -> None:
        try:
            result = await self._call(job)
            await self._report(job, result)
        finally:
            self._inflight.pop(job.token, None)
            self._slot.set()

    async def _call(self, job: Job) -> dict[str, Any]:
        handler = self.handlers.get(job.task)
        if handler is None:
            message = f"this worker has no handler for task {job.task!r}"
            return {"status": "FAILED", "error": message, "logs": job.logs}
        try:
            if inspect.iscoroutinefunction(handler):
                output = await handler(job)
            else:
                output = await asyncio.to_thread(handler, job)
        except Retryable as exc:
            log.warning("task %s (%s) failed: %r", job.task, job.token, exc)
            return {"status": "FAILED", "error": str(exc), "logs": job.logs, "retryable": True}
        except Exception as exc:
            log.warning("task %s (%s) failed: %r", job.task, job.token, exc)
            return {"status": "FAILED", "error": f"{type(exc).__name__}: {exc}", "logs": job.logs}
        return {"status": "SUCCESS", "output": output, "logs": job.logs}

    async def _report(self, job: Job, result: dict[str, Any]) -> None:
        body = {"worker_id": self.worker_id, **result}
        for delay in _backoff(attempts=8):
            try:
                response = await self.http.post(f"/tasks/{job.token}/result", json=body)
            except httpx.HTTPError as exc:
                log.warning("reporting %s failed (%s); retrying in %.1fs", job.token, exc, delay)
                await asyncio.sleep(delay)
                continue
            if response.status_code in (404, 409):
                # Already reported (a redelivery raced us) or the attempt ended: nothing to do.
                log.info("result of %s refused (%s)", job.token, response.status_code)
                return
            if response.status_code >= 500:
                await asyncio.sleep(delay)
                continue
            response.raise_for_status()
            self.completed += 1
            return

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            body = {"tasks": list(self._inflight)}
            try:
                response = await self.http.post(f"/workers/{self.worker_id}/heartbeat", json=body)
                if response.status_code == 404:
                    await self._register()
                    continue
                response.raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when stopping."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` is done; cancel the others that were coroutines
    (futures passed in are left to the caller)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    own = [t for t, a in zip(tasks, aws, strict=True) if t in pending and t is not a]
    for t in own:
        t.cancel()
    await asyncio.gather(*own, return_exceptions=True)


def _backoff(*, attempts: int = 1_000_000) -> Any:
    for n in range(attempts):
        yield min(30.0, 0.5 * 2 ** min(n, 6))


def _sdk_version() -> str:
    try:
        from importlib.metadata import version

        return version("linkloom")
    except Exception:
        return "unknown"

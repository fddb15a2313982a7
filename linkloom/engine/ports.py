"""The narrow interfaces the engine talks through.

Step executors implement ``StepExecutor``; the worker hands each one a ``StepContext`` whose
``services`` carry everything from outside (HTTP port and client, clock, secrets, callbacks,
sub-flows). The ``http`` step sends through an ``HttpPort``: in production aiohttp directly
(``engine/transport.py``), in the sandbox the replay of recorded exchanges. The run store
protocol lives in ``engine/store_port.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx

from linkloom.engine.models import (
    Exchange,
    InboundResponse,
    LogLine,
    OutboundRequest,
    RunInfo,
    StepResult,
)

if TYPE_CHECKING:
    from linkloom.flows.spec import StepBase


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SecretResolver(Protocol):
    def get(self, name: str) -> str | None: ...

    def names(self) -> list[str]: ...


# The headers every ``HttpPort`` sends besides a request's own: what httpx's client sent before
# the http step left httpx, so backends (and the sandbox's stubs) see the same requests.
DEFAULT_HEADERS = (
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("user-agent", f"python-httpx/{httpx.__version__}"),
)


class HttpPort(Protocol):
    """Sends the ``http`` step's requests: one ``OutboundRequest``, one ``InboundResponse``.

    Redirects are never followed, no cookies are kept, and there is no timeout of its own (the
    step's timeout bounds the call). A request that gets no complete answer raises ``CallFailed``.
    """

    async def send(self, request: OutboundRequest) -> InboundResponse: ...


class CallFailed(Exception):
    """An HTTP request that got no complete answer; the ``http`` step records it as a
    ``StepError`` of this ``kind``.

    ``kind``: ``connection`` (refused, reset, a body cut short…), ``timeout``, ``config`` (the
    URL cannot be sent) or ``unrecorded`` (the sandbox has no answer for it; replay is
    deterministic, so it is never retried). ``detail`` says what happened, and names no part of
    the URL (aiohttp's own messages carry it whole, query string and userinfo included): the
    step names the scheme, host, port and path in the attempt's error. ``status`` and
    ``headers`` are those of the answer when its head arrived before its body failed.
    """

    def __init__(
        self,
        detail: str,
        *,
        kind: str = "connection",
        retryable: bool = True,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.kind = kind
        self.retryable = retryable
        self.status = status
        self.headers = headers or {}


@dataclass(slots=True, kw_only=True)
class StepServices:
    """Collaborators a step may use. Tests pass in-memory doubles (see ``linkloom.testing``)."""

    http: httpx.AsyncClient  # other steps' HTTP (llm); tests' ``httpx.MockTransport``
    clock: Clock
    secrets: SecretResolver
    signing_key: str = ""
    public_url: str = ""
    shell_enabled: bool = False
    max_response_bytes: int = 10_000_000
    # Starts a child run and returns its id; used by the ``flow`` step type.
    start_subflow: Callable[..., Awaitable[str]] | None = None
    # Reads a run's status and outputs: (status, outputs) — used by the ``flow`` step type.
    read_run: Callable[[str], Awaitable[tuple[str, dict[str, Any]]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The ``http`` step's port; None: it sends through ``http`` (``transport.HttpxPort``).
    outbound: HttpPort | None = None


@dataclass(slots=True, kw_only=True)
class StepContext:
    """Everything one attempt of one step sees."""

    run: RunInfo
    step: StepBase
    attempt: int
    idempotency_key: str
    upstream: Mapping[str, Mapping[str, Any]]  # step id → {"status", "output", "outputs"}
    services: StepServices
    timeout: float
    state: dict[str, Any] = field(default_factory=dict)  # durable, survives suspend/restart
    item: Any = None
    index: int | None = None
    attempt_id: str = ""
    logs: list[LogLine] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    # Texts derived from secrets (``secrets.x | upper``…) this attempt sent out: an answer that
    # echoes one back is masked by value, like a secret itself.
    sent_secrets: set[str] = field(default_factory=set)

    def template_context(self) -> dict[str, Any]:
        """The names templates can use: inputs, steps, run, secrets, item, index."""
        ctx: dict[str, Any] = {
            "inputs": self.run.inputs,
            "steps": {k: dict(v) for k, v in self.upstream.items()},
            "run": {
                "id": self.run.id,
                "flow": self.run.flow_id,
                "version": self.run.version,
                "trigger": self.run.trigger,
                "scheduled_at": self.run.scheduled_at.isoformat()
                if self.run.scheduled_at
                else None,
                "sandbox": self.run.sandbox,
            },
            "secrets": _SecretsView(self.services.secrets),
        }
        if self.index is not None:
            ctx["item"] = self.item
            ctx["index"] = self.index
        return ctx

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append(LogLine(message=message, level=level, at=self.services.clock.now()))


class _SecretsView(Mapping[str, str]):
    """Lets templates read ``secrets.NAME`` without exposing the whole secret source."""

    def __init__(self, resolver: SecretResolver) -> None:
        self._resolver = resolver

    def __getitem__(self, name: str) -> str:
        value = self._resolver.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._resolver.names())

    def __len__(self) -> int:
        return len(self._resolver.names())


class StepExecutor(Protocol):
    """Runs one attempt of one step type. Failures are returned, never raised."""

    type_name: ClassVar[str]

    async def execute(self, ctx: StepContext) -> StepResult: ...

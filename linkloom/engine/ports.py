"""The narrow interfaces the engine talks through.

Step executors implement ``StepExecutor``; the worker hands each one a ``StepContext`` whose
``services`` carry everything from outside (HTTP client, clock, secrets, callbacks, sub-flows).
The run store protocol lives in ``engine/store_port.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from linkloom.engine.models import Exchange, LogLine, RunInfo, StepResult

if TYPE_CHECKING:
    import httpx

    from linkloom.flows.spec import StepBase


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SecretResolver(Protocol):
    def get(self, name: str) -> str | None: ...

    def names(self) -> list[str]: ...


@dataclass(slots=True, kw_only=True)
class StepServices:
    """Collaborators a step may use. Tests pass in-memory doubles (see ``linkloom.testing``)."""

    http: httpx.AsyncClient
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

"""Running fixture cases in this process, on the production engine, with replayed HTTP.

For each case and each version it needs (the proposal's, production's, and the recording one's
when production moved since): a ``Replayer`` over the case's exchanges becomes the
``httpx.AsyncClient`` transport (with the proposal's stubs for the proposed version only), the
clock is frozen at the case's ``recorded_at``, every secret reads as ``REDACTED`` (what the scrubbed
recordings hold), and the ``CaseEngine`` named in the bundle settings runs the flow. A run that
raises or exceeds ``case_timeout`` comes back with its ``error``; nothing escapes.

This runner has no isolation of its own: the ``process`` and ``docker`` backends run it (through
``linkloom.sandbox.entry``) behind OS limits. Use it directly only for trusted specs and tests.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import httpx

from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.errors import InvalidBundle
from linkloom.sandbox.fixtures import FixtureCase
from linkloom.sandbox.replay import Replayer
from linkloom.sandbox.runner import (
    PRODUCTION,
    PROPOSED,
    RECORDED,
    SANDBOX_ERROR,
    CaseEngine,
    CaseResult,
    CaseRun,
    SandboxResult,
)
from linkloom.sandbox.scrub import REDACTED, Scrubber
from linkloom.sandbox.stubs import Stub

CaseHook = Callable[[str, CaseResult | None], Awaitable[None] | None]


class RedactedSecrets:
    """Every secret exists and reads as ``REDACTED``: the sandbox never holds real secrets."""

    def get(self, name: str) -> str | None:
        return REDACTED

    def names(self) -> list[str]:
        return []


class FrozenClock:
    """The case's clock: stands at ``recorded_at`` unless the engine moves it (timers, backoff)."""

    def __init__(self, now: Any) -> None:
        self._now = now

    def now(self) -> Any:
        return self._now

    def set(self, now: Any) -> None:
        self._now = now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now += timedelta(seconds=seconds)


def load_engine(ref: str) -> CaseEngine:
    """Instantiate the ``module:attribute`` a bundle names as its case engine."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise InvalidBundle(reason=f"engine {ref!r} must look like 'package.module:Class'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidBundle(reason=f"engine {ref!r} cannot be loaded: {exc}") from exc
    engine: CaseEngine = factory()
    return engine


async def run_case(bundle: SandboxBundle, case: FixtureCase, engine: CaseEngine) -> CaseResult:
    """Run one case on every version it needs (proposed, production, recorded); failures of any
    kind come back inside the ``CaseResult``."""
    runs: dict[str, CaseRun] = {}
    for side, flow in bundle.sides(case):
        stubs = bundle.stubs + case.stubs if side == PROPOSED else ()
        runs[side] = await run_side(bundle, case, engine, flow=flow, stubs=stubs)
    return CaseResult(
        case=case.name,
        proposed=runs[PROPOSED],
        production=runs.get(PRODUCTION),
        recorded=runs.get(RECORDED),
    )


async def run_side(
    bundle: SandboxBundle,
    case: FixtureCase,
    engine: CaseEngine,
    *,
    flow: dict[str, Any],
    stubs: tuple[Stub, ...] = (),
) -> CaseRun:
    """One version of the flow on one case, against the case's recordings (and ``stubs``)."""
    settings = bundle.settings
    replayer = Replayer(
        case.exchanges,
        ignore_paths=settings.ignore_paths,
        scrub=Scrubber(),
        on_body_mismatch=settings.on_body_mismatch,
        stubs=stubs,
    )
    started = time.perf_counter()
    error: str | None = None
    outcome = None
    try:
        async with httpx.AsyncClient(transport=replayer.transport()) as http:
            async with asyncio.timeout(settings.case_timeout):
                outcome = await engine.run(
                    flow=flow,
                    case=case,
                    http=http,
                    outbound=replayer,
                    clock=FrozenClock(case.recorded_at),
                    secrets=RedactedSecrets(),
                    settings=settings,
                )
    except TimeoutError:
        error = f"case timed out after {settings.case_timeout:g}s"
    except Exception as exc:  # a hostile or broken flow must not take the runner down
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = (time.perf_counter() - started) * 1000
    unrecorded = tuple(call.to_dict() for call in replayer.unrecorded)
    requests = tuple(replayer.requests)
    if outcome is None:
        return CaseRun(
            run_status=SANDBOX_ERROR,
            requests=requests,
            unrecorded=unrecorded,
            duration_ms=duration_ms,
            error=error,
        )
    return CaseRun(
        run_status=outcome.run_status,
        steps=dict(outcome.steps),
        run_outputs=dict(outcome.run_outputs),
        requests=requests,
        unrecorded=unrecorded,
        duration_ms=duration_ms,
    )


class InProcessRunner:
    """Runs every case of a bundle here, one after another."""

    name: ClassVar[str] = "inprocess"

    def __init__(self, *, engine: CaseEngine | None = None, on_case: CaseHook | None = None):
        self._engine = engine
        self._on_case = on_case

    async def run(self, bundle: SandboxBundle) -> SandboxResult:
        started = time.perf_counter()
        try:
            engine = self._engine or load_engine(bundle.settings.engine)
        except InvalidBundle as exc:
            return SandboxResult(backend=self.name, error=exc.message)
        results = []
        for case in bundle.cases:
            await self._hook(case.name, None)
            result = await run_case(bundle, case, engine)
            await self._hook(case.name, result)
            results.append(result)
        return SandboxResult(
            backend=self.name,
            cases=tuple(results),
            duration_ms=(time.perf_counter() - started) * 1000,
            isolation=("none: in-process",),
        )

    async def _hook(self, name: str, result: CaseResult | None) -> None:
        if self._on_case is not None:
            maybe = self._on_case(name, result)
            if maybe is not None:
                await maybe


class EngineCaseEngine:
    """The production engine as a ``CaseEngine``: wired once ``linkloom.engine`` runs flows."""

    async def run(self, **kwargs: Any) -> Any:
        from linkloom.sandbox import engine_adapter

        return await engine_adapter.run_case(**kwargs)

"""In-memory doubles for tests: ``FrozenClock``, and, re-exported from the production modules
that hold them, ``InMemoryRunStore`` (``engine.memory``), ``StaticSecrets``
(``engine.secrets``) and ``SystemClock`` (``linkloom.clock``). Only tests import this module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from linkloom.clock import SystemClock
from linkloom.engine.memory import InMemoryRunStore
from linkloom.engine.secrets import StaticSecrets

__all__ = ["FrozenClock", "InMemoryRunStore", "StaticSecrets", "SystemClock"]


class FrozenClock:
    """A clock that stands still until moved with ``advance`` or ``set``."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, now: datetime) -> None:
        self._now = now

"""The real clock: timezone-aware UTC now (``engine.ports.Clock``). Tests use
``linkloom.testing.FrozenClock`` instead."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

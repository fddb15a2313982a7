"""Fixture drift: do a case's recordings still match what production sees?

``check_drift(case, recent)`` pairs each recorded exchange with the most recent production
exchange for the same request (same matching key as the replay) and reports those whose
response (status or scrubbed body) changed, and those production no longer makes at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from linkloom.sandbox import fixtures, replay
from linkloom.sandbox.scrub import Scrubber


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftedExchange:
    step_id: str | None
    method: str
    url: str
    recorded_status: int | None
    production_status: int | None
    recorded_body: Any = None
    production_body: Any = None
    production_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "method": self.method,
            "url": self.url,
            "recorded_status": self.recorded_status,
            "production_status": self.production_status,
            "recorded_body": self.recorded_body,
            "production_body": self.production_body,
            "production_run_id": self.production_run_id,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftReport:
    """Drift of one case: changed responses and requests production no longer makes."""

    case: str
    checked: int
    drifted: tuple[DriftedExchange, ...] = ()
    unseen: tuple[str, ...] = field(default_factory=tuple)  # "POST https://…"

    @property
    def ok(self) -> bool:
        return not self.drifted

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "checked": self.checked,
            "ok": self.ok,
            "drifted": [d.to_dict() for d in self.drifted],
            "unseen": list(self.unseen),
        }


def check_drift(
    case: fixtures.FixtureCase,
    recent: Iterable[Any],
    *,
    secrets: Iterable[str] = (),
    ignore_paths: Sequence[str] = replay.DEFAULT_IGNORED_PATHS,
) -> DriftReport:
    """Compare ``case`` with recent production exchanges (records or dicts, oldest first)."""
    scrub = Scrubber.with_secrets(secrets)
    latest: dict[tuple[str, str, str], tuple[fixtures.RecordedExchange, str | None]] = {}
    for raw in recent:
        exchange = fixtures.exchange_from_record(raw, scrub)
        key = replay.request_key(
            exchange.method, exchange.url, exchange.request_body, ignore=ignore_paths, scrub=scrub
        )
        latest[key] = (exchange, fixtures.field_of(raw, "run_id", default=None))
    drifted: list[DriftedExchange] = []
    unseen: list[str] = []
    seen_keys: set[tuple[str, str, str]] = set()
    for recorded in case.exchanges:
        key = replay.request_key(
            recorded.method, recorded.url, recorded.request_body, ignore=ignore_paths, scrub=scrub
        )
        if key in seen_keys:
            continue  # retries of one request: compare the request once, with its last answer
        seen_keys.add(key)
        last = _last_recording(case, key, ignore_paths, scrub)
        match = latest.get(key)
        if match is None:
            unseen.append(f"{recorded.method} {recorded.url}")
            continue
        production, run_id = match
        if production.status != last.status or _canon(production.response_body, ignore_paths) != (
            _canon(last.response_body, ignore_paths)
        ):
            drifted.append(
                DriftedExchange(
                    step_id=last.step_id,
                    method=last.method,
                    url=last.url,
                    recorded_status=last.status,
                    production_status=production.status,
                    recorded_body=last.response_body,
                    production_body=production.response_body,
                    production_run_id=run_id,
                )
            )
    return DriftReport(
        case=case.name, checked=len(seen_keys), drifted=tuple(drifted), unseen=tuple(unseen)
    )


def _last_recording(
    case: fixtures.FixtureCase,
    key: tuple[str, str, str],
    ignore_paths: Sequence[str],
    scrub: Scrubber,
) -> fixtures.RecordedExchange:
    found = None
    for exchange in case.exchanges:
        k = replay.request_key(
            exchange.method, exchange.url, exchange.request_body, ignore=ignore_paths, scrub=scrub
        )
        if k == key:
            found = exchange
    assert found is not None
    return found


def _canon(body: Any, ignore_paths: Sequence[str]) -> str:
    return replay.canonical_body(body, ignore=ignore_paths)

"""Schedule math: when does a cron or interval schedule fire? Pure functions over aware datetimes.

Every result is a timezone-aware UTC ``datetime``; every argument must be timezone-aware.

Cron expressions are evaluated on the schedule's *wall clock* (``timezone``, an IANA name read
through ``zoneinfo``) and then mapped to UTC. Daylight-saving transitions follow the rules of
classic cron (Vixie cron), which people already expect:

* Spring forward (a wall-clock time that does not exist, e.g. 02:30 in Berlin on the last Sunday
  of March): the job fires **once**, shifted forward by the gap (02:30 → 03:30 local, PEP 495
  ``fold=0``). If the shifted instant coincides with a regular fire, only one fire happens.
* Fall back (a wall-clock time that happens twice): a job pinned to an hour fires **once**, at the
  first occurrence. A job whose hour field is ``*`` (hourly, every N minutes) follows real elapsed
  time and fires in both occurrences of the repeated hour, so it never pauses for an hour.

Intervals are anchored to the Unix epoch (fire times are ``epoch + k * interval``), so they are
the same on every replica and across restarts, whatever time the scheduler started.
"""

from __future__ import annotations

import copy
import functools
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from linkloom.flows.durations import format_duration
from linkloom.flows.spec import Schedule
from linkloom.scheduler.errors import InvalidSchedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Wider than any DST gap in the tz database (the largest is 2 h), so that a wall-clock time in a
# gap just before ``after`` is still considered.
_GAP_MARGIN = timedelta(hours=3)
_NEAR = timedelta(hours=26)


@dataclass(frozen=True, slots=True)
class _Cron:
    expression: str
    zone: tzinfo
    fixed_offset: bool  # the zone is UTC or never changes offset: no DST logic needed
    hourly: bool  # hour field is '*': fire in both occurrences of a repeated hour
    template: croniter  # parsed once; copied per iteration (parsing costs ~10x a step)

    def iterator(self, start: datetime) -> croniter:
        it = copy.copy(self.template)
        it.set_current(start, force=True)
        return it


def validate(schedule: Schedule) -> None:
    """Raise ``InvalidSchedule`` when the schedule's cron expression or time zone is unusable."""
    if schedule.cron is not None:
        _compile(schedule.cron, schedule.timezone)
    else:
        _zone(schedule.timezone, schedule.cron or "interval")


def describe(schedule: Schedule) -> str:
    """A short human description: ``cron '0 3 * * *' in Europe/Kyiv`` or ``every 30s``."""
    if schedule.cron is not None:
        return f"cron {schedule.cron!r} in {schedule.timezone}"
    return f"every {format_duration(schedule.interval or 0.0)}"


def next_fires(schedule: Schedule, *, after: datetime, n: int = 1) -> list[datetime]:
    """The first ``n`` fire times strictly after ``after``, ascending."""
    out: list[datetime] = []
    if n <= 0:
        return out
    for fire in iter_fires(schedule, after=after):
        out.append(fire)
        if len(out) >= n:
            break
    return out


def next_fire(schedule: Schedule, *, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    return next(iter_fires(schedule, after=after))


def fires_between(
    schedule: Schedule, *, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Fire times ``t`` with ``start <= t <= end``, ascending, at most ``limit`` of them.

    Ask for ``limit + 1`` to learn whether the window holds more than ``limit``.
    """
    out: list[datetime] = []
    if limit <= 0 or end < start:
        return out
    for fire in iter_fires(schedule, after=start - _US):
        if fire > end:
            break
        out.append(fire)
        if len(out) >= limit:
            break
    return out


def latest_fires(
    schedule: Schedule, *, end: datetime, n: int, not_before: datetime
) -> list[datetime]:
    """The last ``n`` fire times ``t`` with ``not_before <= t <= end``, ascending.

    Walks backwards, so a long window (a year of per-second fires) costs ``O(n)``, not the
    size of the window.
    """
    _check_aware(end, not_before)
    if n <= 0 or end < not_before:
        return []
    if schedule.interval is not None:
        step = _interval_us(schedule.interval)
        k_end = _us(end) // step
        k_start = -(-_us(not_before) // step)  # ceil
        first = max(k_start, k_end - n + 1)
        return [EPOCH + timedelta(microseconds=k * step) for k in range(first, k_end + 1)]
    spec = _compile(schedule.cron or "", schedule.timezone)
    found: set[datetime] = set()
    threshold: datetime | None = None
    local_end = end.astimezone(spec.zone).replace(tzinfo=None) + _GAP_MARGIN
    it = spec.iterator(local_end)
    while True:
        wall: datetime = it.get_prev(datetime)
        candidates = _resolve(spec, wall)
        found.update(c for c in candidates if not_before <= c <= end)
        lowest = min(candidates)
        if lowest < not_before - _GAP_MARGIN:
            break
        if threshold is None and len(found) >= n:
            threshold = sorted(found)[-n]
        if threshold is not None and lowest < threshold - _GAP_MARGIN:
            break
    return sorted(found)[-n:]


def is_fire_time(schedule: Schedule, moment: datetime) -> bool:
    """Whether ``moment`` is one of the schedule's fire times (used to notice a changed spec)."""
    return next_fire(schedule, after=moment - _US) == moment


def iter_fires(schedule: Schedule, *, after: datetime) -> Iterator[datetime]:
    """All fire times strictly after ``after``, ascending, without end."""
    _check_aware(after)
    if schedule.interval is not None:
        return _iter_interval(_interval_us(schedule.interval), after)
    return _iter_cron(_compile(schedule.cron or "", schedule.timezone), after)


def _iter_interval(step: int, after: datetime) -> Iterator[datetime]:
    k = _us(after) // step + 1
    while True:
        yield EPOCH + timedelta(microseconds=k * step)
        k += 1


def _iter_cron(spec: _Cron, after: datetime) -> Iterator[datetime]:
    after = after.astimezone(UTC)
    if spec.fixed_offset or _steady(spec.zone, after):
        start = after.astimezone(spec.zone).replace(tzinfo=None)
        it = spec.iterator(start)
        if spec.fixed_offset:
            while True:
                wall: datetime = it.get_next(datetime)
                yield wall.replace(tzinfo=spec.zone).astimezone(UTC)
    else:
        start = after.astimezone(spec.zone).replace(tzinfo=None) - _GAP_MARGIN
        it = spec.iterator(start)
    # Second occurrences of a repeated hour wait here until every earlier instant was yielded.
    later: list[datetime] = []
    last = after
    while True:
        wall = it.get_next(datetime)
        first, *second = _resolve(spec, wall)
        while later and later[0] < first:
            fire = heapq.heappop(later)
            if fire > last:
                last = fire
                yield fire
        for fire in second:
            heapq.heappush(later, fire)
        if first > last:  # times in a DST gap can land on an instant already yielded
            last = first
            yield first


def _resolve(spec: _Cron, wall: datetime) -> list[datetime]:
    """The UTC instants a naive wall-clock time stands for: one, or two in a repeated hour."""
    first = wall.replace(tzinfo=spec.zone, fold=0)
    instant = first.astimezone(UTC)
    if spec.fixed_offset or not spec.hourly:
        return [instant]
    second = wall.replace(tzinfo=spec.zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [instant]
    if instant.astimezone(spec.zone).replace(tzinfo=None) != wall:
        return [instant]  # a gap, not a repeat
    return [instant, second.astimezone(UTC)]


def _steady(zone: tzinfo, around: datetime) -> bool:
    """True when the zone keeps one offset for a day either side (no gap can precede ``around``)."""
    offset = around.astimezone(zone).utcoffset()
    return (
        (around - _NEAR).astimezone(zone).utcoffset()
        == offset
        == (around + _NEAR).astimezone(zone).utcoffset()
    )


@functools.lru_cache(maxsize=65536)
def _compile(expression: str, timezone: str) -> _Cron:
    zone = _zone(timezone, expression)
    try:
        if not croniter.is_valid(expression):
            raise ValueError("not a cron expression")
        template = croniter(expression, datetime(2000, 1, 1))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSchedule(
            schedule=expression,
            reason=f"{exc}; use five fields 'minute hour day month weekday', e.g. '0 3 * * *'",
        ) from exc
    return _Cron(
        expression=expression,
        zone=zone,
        fixed_offset=_fixed(zone),
        hourly=template.expanded[1] == ["*"],
        template=template,
    )


@functools.lru_cache(maxsize=1024)
def _zone(name: str, expression: str) -> tzinfo:
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(
            schedule=expression,
            reason=f"unknown time zone {name!r}; use an IANA name such as 'Europe/Kyiv' or 'UTC'",
        ) from exc


def _fixed(zone: tzinfo) -> bool:
    if zone is UTC:
        return True
    probes = [datetime(year, month, 15, tzinfo=UTC) for year in (2000, 2026) for month in (1, 7)]
    return len({p.astimezone(zone).utcoffset() for p in probes}) == 1


def _interval_us(seconds: float | None) -> int:
    step = round((seconds or 0) * 1_000_000)
    if step <= 0:
        raise InvalidSchedule(schedule=f"every {seconds}s", reason="the interval must be positive")
    return step


def _us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _check_aware(*moments: datetime) -> None:
    for moment in moments:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{moment!r} must be timezone-aware (use datetime.now(UTC))")

"""Properties of the schedule math across time zones and DST transitions."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkloom.flows.spec import Schedule
from linkloom.scheduler import cron

DST_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Europe/Kyiv"]

crons = st.sampled_from(
    ["0 * * * *", "*/15 * * * *", "30 2 * * *", "0 1-3 * * *", "45 1 * * 0", "0 0 1 * *"]
)
zones = st.sampled_from([*DST_ZONES, "UTC", "Asia/Kolkata"])
moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=60, deadline=None)
@given(expr=crons, zone=zones, after=moments)
def test_fires_are_strictly_increasing_and_are_fire_times(
    expr: str, zone: str, after: datetime
) -> None:
    s = Schedule(cron=expr, timezone=zone)
    fires = cron.next_fires(s, after=after, n=12)
    assert all(f > after for f in fires)
    assert all(b > a for a, b in itertools.pairwise(fires))
    assert cron.is_fire_time(s, fires[3])
    # resuming from any fire gives the same continuation (stable across restarts)
    assert cron.next_fires(s, after=fires[4], n=7) == fires[5:]
    assert cron.fires_between(s, start=fires[2], end=fires[8], limit=100) == fires[2:9]


@pytest.mark.parametrize("zone", DST_ZONES)
def test_daily_job_fires_exactly_once_every_local_day_for_a_year(zone: str) -> None:
    s = Schedule(cron="30 2 * * *", timezone=zone)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    fires = cron.fires_between(s, start=start, end=start + timedelta(days=365), limit=1000)
    days = Counter(f.astimezone(ZoneInfo(zone)).date() for f in fires)
    assert len(fires) in (365, 366)
    assert set(days.values()) == {1}


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Europe/Kyiv"])
def test_hourly_job_never_leaves_a_gap_longer_than_an_hour(zone: str) -> None:
    """Around both 2026 transitions of each zone (US: Mar 8, Nov 1; EU: Mar 29, Oct 25)."""
    s = Schedule(cron="0 * * * *", timezone=zone)
    for start, end in [((3, 1), (4, 2)), ((10, 20), (11, 5))]:
        fires = cron.fires_between(
            s,
            start=datetime(2026, *start, tzinfo=UTC),
            end=datetime(2026, *end, tzinfo=UTC),
            limit=10_000,
        )
        assert {b - a for a, b in itertools.pairwise(fires)} == {timedelta(hours=1)}

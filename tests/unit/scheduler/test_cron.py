from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from linkloom.flows.spec import Schedule
from linkloom.scheduler import cron
from linkloom.scheduler.errors import InvalidSchedule

BERLIN = ZoneInfo("Europe/Berlin")
KYIV = ZoneInfo("Europe/Kyiv")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)


def test_next_fires_daily_cron_in_time_zone() -> None:
    s = Schedule(cron="0 3 * * *", timezone="Europe/Kyiv")
    fires = cron.next_fires(s, after=utc(2026, 6, 1, 12), n=3)
    assert fires == [local(KYIV, 2026, 6, d, 3) for d in (2, 3, 4)]
    assert all(f.tzinfo is UTC for f in fires)


def test_next_fires_is_strictly_after() -> None:
    s = Schedule(cron="*/5 * * * *")
    assert cron.next_fires(s, after=utc(2026, 1, 1, 0, 5), n=1) == [utc(2026, 1, 1, 0, 10)]


def test_cron_spring_forward_fires_once_shifted_by_the_gap() -> None:
    """02:30 does not exist in Berlin on 2026-03-29: the job fires once, at 03:30 CEST."""
    s = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = cron.next_fires(s, after=utc(2026, 3, 28), n=3)
    assert fires == [
        local(BERLIN, 2026, 3, 28, 2, 30),
        local(BERLIN, 2026, 3, 29, 3, 30),
        local(BERLIN, 2026, 3, 30, 2, 30),
    ]


def test_cron_spring_forward_gap_does_not_duplicate_a_regular_fire() -> None:
    s = Schedule(cron="0 * * * *", timezone="Europe/Berlin")
    fires = cron.fires_between(s, start=utc(2026, 3, 28, 23), end=utc(2026, 3, 29, 3), limit=10)
    # 00:00, 01:00 CET, then 02:00 does not exist (= 03:00 CEST, fired once), 04:00, 05:00 CEST
    assert fires == [
        utc(2026, 3, 28, 23),
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
        utc(2026, 3, 29, 3),
    ]
    assert len(set(fires)) == len(fires)


def test_cron_spring_forward_gap_just_before_after_is_not_lost() -> None:
    s = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    after = local(BERLIN, 2026, 3, 29, 3, 15)  # the wall clock has jumped past 02:30 already
    assert cron.next_fire(s, after=after) == local(BERLIN, 2026, 3, 29, 3, 30)


def test_cron_fall_back_pinned_job_fires_once() -> None:
    """02:30 happens twice in Berlin on 2026-10-25: a job pinned to 02:30 fires only the first."""
    s = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = cron.next_fires(s, after=utc(2026, 10, 24, 12), n=2)
    assert fires == [local(BERLIN, 2026, 10, 25, 2, 30, fold=0), local(BERLIN, 2026, 10, 26, 2, 30)]


def test_cron_fall_back_hourly_job_follows_real_time() -> None:
    s = Schedule(cron="*/30 * * * *", timezone="Europe/Berlin")
    fires = cron.fires_between(s, start=utc(2026, 10, 24, 23), end=utc(2026, 10, 25, 2), limit=20)
    # every 30 real minutes, through both occurrences of the repeated hour, in order
    assert fires == [utc(2026, 10, 24, 23) + timedelta(minutes=30 * k) for k in range(7)]


def test_interval_is_anchored_to_the_epoch() -> None:
    s = Schedule(interval=3600)
    assert cron.next_fire(s, after=utc(2026, 1, 1, 5, 17, 3)) == utc(2026, 1, 1, 6)
    s = Schedule(interval="90s")
    a = cron.next_fires(s, after=utc(2026, 1, 1, 0, 0, 1), n=2)
    b = cron.next_fires(s, after=utc(2026, 1, 1, 0, 0, 50), n=2)
    assert a[1] == b[0] or a == b
    assert all(int(f.timestamp()) % 90 == 0 for f in a + b)


def test_fires_between_is_inclusive_and_bounded() -> None:
    s = Schedule(interval=1)
    fires = cron.fires_between(s, start=utc(2026, 1, 1), end=utc(2026, 1, 1, 0, 0, 10), limit=100)
    assert len(fires) == 11
    assert fires[0] == utc(2026, 1, 1)
    assert len(cron.fires_between(s, start=utc(2026, 1, 1), end=utc(2027, 1, 1), limit=5)) == 5


@pytest.mark.parametrize(
    "schedule",
    [Schedule(interval=7), Schedule(cron="*/7 * * * *", timezone="Europe/Berlin")],
    ids=["interval", "cron"],
)
def test_latest_fires_matches_forward_enumeration(schedule: Schedule) -> None:
    start, end = utc(2026, 10, 24, 22), utc(2026, 10, 25, 3)
    forward = cron.fires_between(schedule, start=start, end=end, limit=10_000)
    assert cron.latest_fires(schedule, end=end, n=5, not_before=start) == forward[-5:]
    assert cron.latest_fires(schedule, end=end, n=100_000, not_before=start) == forward


def test_latest_fires_over_a_long_window_is_cheap() -> None:
    s = Schedule(cron="* * * * *")
    got = cron.latest_fires(s, end=utc(2026, 1, 1), n=3, not_before=utc(2000, 1, 1))
    assert got == [utc(2025, 12, 31, 23, 58), utc(2025, 12, 31, 23, 59), utc(2026, 1, 1)]


def test_is_fire_time() -> None:
    s = Schedule(cron="0 3 * * *")
    assert cron.is_fire_time(s, utc(2026, 1, 1, 3))
    assert not cron.is_fire_time(s, utc(2026, 1, 1, 4))


@pytest.mark.parametrize(
    ("expr", "zone"), [("61 * * * *", "UTC"), ("bad", "UTC"), ("0 3 * * *", "Mars/Olympus")]
)
def test_invalid_schedule_says_what_to_do(expr: str, zone: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        cron.validate(Schedule(cron=expr, timezone=zone))
    assert "use" in str(info.value)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_fire(Schedule(interval=5), after=datetime(2026, 1, 1))


def test_describe() -> None:
    assert cron.describe(Schedule(cron="0 3 * * *", timezone="Europe/Kyiv")) == (
        "cron '0 3 * * *' in Europe/Kyiv"
    )
    assert cron.describe(Schedule(interval=90)) == "every 1m30s"

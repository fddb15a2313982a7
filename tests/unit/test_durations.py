from __future__ import annotations

import pytest

from linkloom.flows.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("PT30S", 30),
        ("P1DT1H", 90000),
        (12, 12),
        ("2.5", 2.5),
        ("250ms", 0.25),
    ],
)
def test_parse_duration_accepts_every_documented_form(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["soon", "-5s", "P", True, None, "1y", "x" * 100])
def test_parse_duration_rejects_garbage_with_a_hint(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_format_duration_round_trips():
    for seconds in (0, 0.5, 30, 90, 3600, 5400, 90061):
        assert parse_duration(format_duration(seconds)) == seconds

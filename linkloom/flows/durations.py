"""Durations as specs write them: ``30s``, ``5m``, ``1h30m``, ISO ``PT30S`` or plain seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_COMPACT = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*)+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
MAX_SECONDS = 366 * 86400.0


def parse_duration(value: object) -> float:
    """Return the duration in seconds.

    Raises:
        ValueError: with a message that shows the accepted forms.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(_HELP)
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            raise ValueError("a duration may be at most 366 days") from None
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError(_HELP)
    if seconds != seconds or seconds < 0:
        raise ValueError("a duration must be zero or positive")
    if seconds > MAX_SECONDS:
        raise ValueError("a duration may be at most 366 days")
    return seconds


_HELP = "expected a duration such as 30s, 5m, 1h30m, PT30S or a number of seconds"


def _parse_text(text: str) -> float:
    if len(text) > 64:
        raise ValueError(_HELP)
    try:
        return float(text)
    except ValueError:
        pass
    if _COMPACT.match(text):
        return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    match = _ISO.match(text.upper())
    if match and text.upper() not in ("P", "PT"):
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return (
            parts.get("w", 0) * 604800
            + parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    raise ValueError(f"{text!r} is not a duration; {_HELP}")


def format_duration(seconds: float) -> str:
    """Render seconds in the compact form (``90`` → ``1m30s``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds:g}s"
    remaining = int(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)

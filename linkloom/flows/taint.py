"""Values derived from secrets, marked where a template that reads ``secrets.*`` renders them.

A template such as ``"{{ secrets.token | upper }}"`` or ``"key-{{ secrets.token[::-1] }}"``
produces text that no longer equals the secret, so masking by value cannot find it. Instead
``templates.render`` marks whatever such a template produces (``mark``): strings become
``SecretStr``, numbers ``SecretInt``/``SecretFloat``, and containers have their leaves marked. The
marks behave exactly like the plain values (a request is sent with the real text), and everything
that persists a value masks marked ones whole (``mask``): recorded requests, outputs, logs.

Booleans and ``None`` cannot be marked (Python forbids subclassing ``bool``): a condition computed
from a secret reveals one bit, as it does by choosing a branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MASK = "***"

_marked = False  # set once this process has marked a value: persisting can skip the walk before


class Secret:
    """Marker base of values derived from a secret."""

    __slots__ = ()


class SecretStr(Secret, str):
    __slots__ = ()


class SecretInt(Secret, int):
    __slots__ = ()


class SecretFloat(Secret, float):
    __slots__ = ()


def mark(value: Any) -> Any:
    """``value`` with every string and number in it marked as derived from a secret."""
    global _marked
    _marked = True
    return _mark(value)


def _mark(value: Any) -> Any:
    if isinstance(value, Secret) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, int):
        return SecretInt(value)
    if isinstance(value, float):
        return SecretFloat(value)
    if isinstance(value, Mapping):
        return {_mark(k): _mark(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark(v) for v in value]
    return value


def is_marked(value: Any) -> bool:
    return isinstance(value, Secret)


def ever_marked() -> bool:
    """Whether this process has marked any value (until then nothing needs masking)."""
    return _marked


def text(value: Any) -> str:
    """``str(value)`` that keeps the mark (``str()`` of a ``SecretStr`` is a plain ``str``)."""
    plain = value if isinstance(value, str) else str(value)
    return SecretStr(plain) if isinstance(value, Secret) else plain


def mask(value: Any) -> Any:
    """A copy of ``value`` with every marked value (keys too) replaced by ``***``."""
    if not _marked:
        return value
    return _mask(value)


def marked_texts(value: Any) -> set[str]:
    """The marked strings in ``value`` (keys too): what a request derived from secrets sent, so
    an answer that echoes one back can be masked by value."""
    if not _marked:
        return set()
    found: set[str] = set()
    _collect(value, found)
    return found


def _collect(value: Any, found: set[str]) -> None:
    if isinstance(value, SecretStr):
        found.add(str.__str__(value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect(key, found)
            _collect(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, found)


def _mask(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Mapping):
        return {_mask(k): _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value

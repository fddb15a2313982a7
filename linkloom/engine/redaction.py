"""Redaction of what the engine persists: sensitive headers and values derived from secrets.

Anything recorded (exchanges, logs, outputs, errors) passes through ``scrub``: a value a template
rendered from ``secrets.*`` (marked by ``linkloom.flows.taint``, whatever filters it went through)
is stored as ``***`` whole, and every occurrence of a secret's value elsewhere is replaced by
``***``. Header names that look like credentials are always redacted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from linkloom.flows import taint

MASK = taint.MASK
_SENSITIVE = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie|x-loom-signature)$"
    r"|token|key|secret|password|passwd|credential|session",
    re.IGNORECASE,
)
# Header names that contain "key" but carry no secret.
_HARMLESS = {"idempotency-key", "x-loom-idempotency-key"}
MIN_SECRET_LENGTH = 4  # shorter values would mask innocent text everywhere


@functools.lru_cache(maxsize=1024)  # the same few names on every call
def is_sensitive_header(name: str) -> bool:
    return name.lower() not in _HARMLESS and bool(_SENSITIVE.search(name))


def redact_headers(headers: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    values = _usable(secrets)
    return {
        name: MASK
        if is_sensitive_header(name) or taint.is_marked(value)
        else _scrub_text(value, values)
        for name, value in headers.items()
    }


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """Mask values derived from secrets whole, and secret values inside strings (keys too)."""
    values = _usable(secrets)
    if not values:
        return taint.mask(value)
    return _scrub(value, values)


def _usable(secrets: Iterable[str]) -> list[str]:
    # Longest first, so a secret containing another is masked whole.
    return sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def _scrub(value: Any, values: list[str]) -> Any:
    if taint.is_marked(value):
        return MASK
    if isinstance(value, str):
        return _scrub_text(value, values)
    if isinstance(value, Mapping):
        return {_scrub_key(k, values): _scrub(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, values) for v in value]
    return value


def _scrub_key(key: Any, values: list[str]) -> str:
    return MASK if taint.is_marked(key) else _scrub_text(str(key), values)


def _scrub_text(text: str, values: list[str]) -> str:
    for secret in values:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def secret_values(resolver: Any) -> list[str]:
    """All values a ``SecretResolver`` knows."""
    out = []
    for name in resolver.names():
        value = resolver.get(name)
        if value:
            out.append(value)
    return out

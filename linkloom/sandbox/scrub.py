"""Scrubbing secrets out of recorded exchanges before they are stored as fixtures.

Rules (the same on both sides, so a scrubbed recording still matches a sandbox request):

* headers: ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``,
  ``X-Loom-Signature`` and every header whose name contains ``token``, ``secret`` or ``key``;
* JSON object keys and URL query parameters that name a credential (``password``, ``token``,
  ``api_key``, ``secret``, ``authorization``, ``cookie``, ``signature``, ``credential`` or a
  ``key`` word such as ``private_key``; ``monkey`` is data);
* any occurrence of a known secret value, anywhere (strings, URLs, bodies).

Scrubbed values become ``REDACTED``. The sandbox's secret resolver answers ``REDACTED`` for every
name, so ``{{ secrets.X }}`` rendered in the sandbox matches what the recording holds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"

_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-loom-signature"}
)
_SENSITIVE_HEADER_PARTS = ("token", "secret", "key")
_SENSITIVE_KEY_PARTS = (
    "password",
    "passwd",
    "token",
    "secret",
    "apikey",
    "authorization",
    "cookie",
    "signature",
    "credential",
)
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MIN_SECRET_LEN = 4  # shorter "secrets" would scrub ordinary text


@functools.lru_cache(maxsize=4096)
def sensitive_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADERS or any(p in lowered for p in _SENSITIVE_HEADER_PARTS)


@functools.lru_cache(maxsize=8192)
def sensitive_key(name: str) -> bool:
    """Whether a JSON key or query parameter names a credential.

    Identifiers are not credentials: ``idempotency_key`` and names ending in ``id``/``ids``
    (``token_id``, ``keyIds``) keep their values, so replays and diffs can still match on them.
    """
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", name).lower()) if w]
    if not words or words[-1] in ("id", "ids") or words[:2] == ["idempotency", "key"]:
        return False
    lowered = name.lower()
    if any(p in lowered for p in _SENSITIVE_KEY_PARTS):
        return True
    return "key" in words or "auth" in words or "pwd" in words


@dataclass(frozen=True, slots=True)
class Scrubber:
    """Replaces credentials and known secret values by ``REDACTED``."""

    secrets: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def with_secrets(cls, values: Iterable[str]) -> Scrubber:
        # Longest first, so a secret containing another is replaced whole.
        kept = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LEN}
        return cls(tuple(sorted(kept, key=len, reverse=True)))

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def headers(self, headers: Mapping[str, Any] | None) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in (headers or {}).items():
            out[str(name)] = REDACTED if sensitive_header(str(name)) else self.text(str(value))
        return out

    def url(self, url: str) -> str:
        parts = urlsplit(self.text(url))
        if not parts.query:
            return urlunsplit(parts)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if sensitive_key(k) else v) for k, v in pairs])
        return urlunsplit(parts._replace(query=query))

    def data(self, value: Any) -> Any:
        """Scrub a JSON value: credential keys and secret values, recursively."""
        if isinstance(value, Mapping):
            # Only string values are redacted: ``"total_tokens": 12`` is data, not a credential.
            return {
                str(k): REDACTED
                if sensitive_key(str(k)) and isinstance(value[k], str) and value[k]
                else self.data(value[k])
                for k in value
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

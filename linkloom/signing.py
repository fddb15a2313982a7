"""HMAC-SHA256 signatures for everything that crosses the wire: calls to user backends,
callbacks from them, and inbound webhooks. Standard library only, so the SDK can use it.

Scheme ``v1``: ``X-Loom-Timestamp: <unix seconds>`` and
``X-Loom-Signature: v1=<hex(hmac_sha256(secret, "<timestamp>." + body))>``.
GitHub-style ``X-Hub-Signature-256: sha256=<hex(hmac_sha256(secret, body))>`` is accepted for
webhooks, where replays are refused by delivery id and body hash instead of timestamp.

Parsing is strict (docs/protocol.md, section 4): the timestamp is whole seconds, and the signature
header is exactly one ``v1=<64 lowercase hex digits>`` entry. A list (``v1=<sig>,v1=<sig>``), an
extra or unknown entry (``v1=<sig>,x``, ``v0=abc,v1=<sig>``) or a header sent twice is refused,
so a receiver that keys replays on what it verified (``Signed.replay_key``) sees every mutation
of one signed request as the same request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

TIMESTAMP_HEADER = "X-Loom-Timestamp"
SIGNATURE_HEADER = "X-Loom-Signature"
GITHUB_HEADER = "X-Hub-Signature-256"
DEFAULT_TOLERANCE = 300.0
_V1 = re.compile(r"v1=([0-9a-f]{64})")
_GITHUB = re.compile(r"sha256=([0-9a-f]{64})")
_SECONDS = re.compile(r"[0-9]{1,15}")


class SignatureError(ValueError):
    """The request's signature is missing, wrong or too old."""


def sign(secret: str | bytes, body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
    """Return the headers that sign ``body`` at ``timestamp`` (now by default)."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: "v1=" + _mac(secret, ts.encode() + b"." + body)}


@dataclass(frozen=True, slots=True)
class Signed:
    """What a verified ``v1`` request proved: its timestamp and the MAC that matched."""

    timestamp: int
    mac: str  # lowercase hex HMAC of "<timestamp>." + body

    @property
    def replay_key(self) -> str:
        """The same for every copy of one signed request, whatever its header's spelling."""
        return f"v1:{self.timestamp}:{self.mac}"


def verify(
    secret: str | bytes,
    body: bytes,
    headers: dict[str, str] | object,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> float:
    """Check a ``v1`` signature and return its timestamp.

    Raises:
        SignatureError: saying what is wrong, never what the right value would be.
    """
    return float(check(secret, body, headers, tolerance=tolerance, now=now).timestamp)


def check(
    secret: str | bytes,
    body: bytes,
    headers: dict[str, str] | object,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Signed:
    """Check a ``v1`` signature; return what was verified (key replays on ``replay_key``).

    ``headers`` is any mapping; one with ``getlist`` (Starlette) or ``getall`` (aiohttp) is
    also checked for a header sent twice.

    Raises:
        SignatureError: saying what is wrong, never what the right value would be.
    """
    ts = _single(headers, TIMESTAMP_HEADER)
    sig = _single(headers, SIGNATURE_HEADER)
    if not ts or not sig:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    ts = ts.strip()
    if not _SECONDS.fullmatch(ts):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be whole unix seconds")
    current = time.time() if now is None else now
    skew = abs(current - int(ts))
    if skew > tolerance:
        raise SignatureError(
            f"signature timestamp is {skew:.0f}s away from now "
            f"(allowed: {tolerance:.0f}s); check the clocks or re-sign"
        )
    match = _V1.fullmatch(sig.strip())
    if match is None:
        raise SignatureError(f"{SIGNATURE_HEADER} must be exactly one v1=<64 hex digits> entry")
    expected = _mac(secret, ts.encode() + b"." + body)
    if not hmac.compare_digest(expected, match.group(1)):
        raise SignatureError("signature does not match the body")
    return Signed(timestamp=int(ts), mac=expected)


def verify_github(secret: str | bytes, body: bytes, header_value: str) -> None:
    """Check a GitHub-style ``X-Hub-Signature-256`` header: exactly one ``sha256=<hex>``."""
    match = _GITHUB.fullmatch(header_value.strip())
    if match is None:
        raise SignatureError(f"{GITHUB_HEADER} must be exactly one sha256=<64 hex digits> entry")
    if not hmac.compare_digest(_mac(secret, body), match.group(1)):
        raise SignatureError("signature does not match the body")


def repeated(headers: object, *names: str) -> list[str]:
    """Those of ``names`` sent more than once (only a multi-value mapping can tell)."""
    values = getattr(headers, "getlist", None) or getattr(headers, "getall", None)
    if values is None:
        return []
    out = []
    for name in names:
        try:
            count = len(values(name))
        except KeyError:  # aiohttp's getall raises for a missing header
            count = 0
        if count > 1:
            out.append(name)
    return out


def sign_github(secret: str | bytes, body: bytes) -> dict[str, str]:
    return {GITHUB_HEADER: "sha256=" + _mac(secret, body)}


def token(secret: str | bytes, *parts: str) -> str:
    """A deterministic MAC over ``parts``, used for single-use callback tokens."""
    return _mac(secret, "\x1f".join(parts).encode())


def _single(headers: object, name: str) -> str | None:
    if repeated(headers, name):
        raise SignatureError(f"{name} was sent more than once")
    get = headers.get  # type: ignore[attr-defined]
    value = get(name)
    if value is None:
        value = get(name.lower())
    return None if value is None else str(value)


def _mac(secret: str | bytes, data: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).hexdigest()

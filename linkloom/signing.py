"""HMAC-SHA256 signatures for everything that crosses the wire: calls to user backends,
callbacks from them, and inbound webhooks. Standard library only, so the SDK can use it.

Scheme ``v1``: ``X-Loom-Timestamp: <unix seconds>`` and
``X-Loom-Signature: v1=<hex(hmac_sha256(secret, "<timestamp>." + body))>``.
GitHub-style ``X-Hub-Signature-256: sha256=<hex(hmac_sha256(secret, body))>`` is accepted for
webhooks, where replays are refused by delivery id instead of timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Loom-Timestamp"
SIGNATURE_HEADER = "X-Loom-Signature"
GITHUB_HEADER = "X-Hub-Signature-256"
DEFAULT_TOLERANCE = 300.0


class SignatureError(ValueError):
    """The request's signature is missing, wrong or too old."""


def sign(secret: str | bytes, body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
    """Return the headers that sign ``body`` at ``timestamp`` (now by default)."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: "v1=" + _mac(secret, ts.encode() + b"." + body)}


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
    get = headers.get  # type: ignore[attr-defined]
    ts = get(TIMESTAMP_HEADER) or get(TIMESTAMP_HEADER.lower())
    sig = get(SIGNATURE_HEADER) or get(SIGNATURE_HEADER.lower())
    if not ts or not sig:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        ts_value = float(ts)
    except ValueError as exc:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds") from exc
    current = time.time() if now is None else now
    if abs(current - ts_value) > tolerance:
        raise SignatureError(
            f"signature timestamp is {abs(current - ts_value):.0f}s away from now "
            f"(allowed: {tolerance:.0f}s); check the clocks or re-sign"
        )
    expected = "v1=" + _mac(secret, ts.encode() + b"." + body)
    if not any(hmac.compare_digest(expected, part.strip()) for part in sig.split(",")):
        raise SignatureError("signature does not match the body")
    return ts_value


def verify_github(secret: str | bytes, body: bytes, header_value: str) -> None:
    """Check a GitHub-style ``X-Hub-Signature-256`` header."""
    expected = "sha256=" + _mac(secret, body)
    if not hmac.compare_digest(expected, header_value.strip()):
        raise SignatureError("signature does not match the body")


def sign_github(secret: str | bytes, body: bytes) -> dict[str, str]:
    return {GITHUB_HEADER: "sha256=" + _mac(secret, body)}


def token(secret: str | bytes, *parts: str) -> str:
    """A deterministic MAC over ``parts``, used for single-use callback tokens."""
    return _mac(secret, "\x1f".join(parts).encode())


def _mac(secret: str | bytes, data: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).hexdigest()

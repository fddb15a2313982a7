"""Web Push sending with ``pywebpush``: payloads encrypted for the browser (RFC 8291,
aes128gcm), delivered to its push service (RFC 8030) with a VAPID signature (RFC 8292) by keys
the server generated (``generate_keys``; stored by ``store.webpush``, the private key sealed).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import aiohttp
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from linkloom.notifications.personal import PushOutcome, PushSubscription


@dataclass(frozen=True, slots=True, kw_only=True)
class VapidKeys:
    public_key: str  # base64url of the uncompressed P-256 point: the browser's applicationServerKey
    private_pem: str  # PKCS#8 PEM; a secret


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_key_of(vapid: Vapid) -> str:
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(raw)


def generate_keys() -> VapidKeys:
    """A new VAPID key pair (P-256)."""
    vapid = Vapid()
    vapid.generate_keys()
    return VapidKeys(public_key=public_key_of(vapid), private_pem=vapid.private_pem().decode())


class WebPushSender:
    """Sends one notification to one subscription; never raises for a failed delivery."""

    def __init__(
        self, *, keys: VapidKeys, subject: str, ttl: int = 24 * 3600, timeout: float = 10.0
    ) -> None:
        self.keys = keys
        self.subject = subject
        self.ttl = ttl
        self.timeout = timeout
        self._vapid = Vapid.from_pem(keys.private_pem.encode())

    async def send(self, subscription: PushSubscription, payload: dict[str, str]) -> PushOutcome:
        info = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        try:
            response = await webpush_async(
                info,
                data=json.dumps(payload),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self.subject},  # aud and exp are set per endpoint
                ttl=self.ttl,
                timeout=self.timeout,
            )
        except WebPushException as exc:
            status = exc.status_code
            return PushOutcome(
                ok=False, status=status, gone=status in (404, 410), error=str(exc)[:500]
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return PushOutcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        status = getattr(response, "status", None)
        return PushOutcome(ok=True, status=status)

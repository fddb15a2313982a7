"""Real local receivers for the notification proof tests, each in its own thread and loop:

* ``WebhookReceiver``: an aiohttp server on 127.0.0.1 recording every POST (headers, JSON body);
  ``status`` is what it answers (503 makes it a failing receiver); it can start on a given
  port, so a test can start it late at a URL that was refusing connections before.
* ``SmtpServer``: aiosmtpd's ``Controller`` on a free port recording every message.
* ``TaskBackend``: the user backend the flows call; ``fail`` makes its tasks answer FAILED.
"""

from __future__ import annotations

import email
import ipaddress
import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from multidict import CIMultiDict

from tests.support.servers import ThreadedAiohttpServer, free_port


@dataclass
class Received:
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP header names are
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver(ThreadedAiohttpServer):
    def __init__(self, *, port: int = 0, status: int = 200, set_cookie: str = "") -> None:
        super().__init__(port=port)
        self.status = status
        self.set_cookie = set_cookie  # a Set-Cookie header for every answer, when given
        self.received: list[Received] = []
        self.answered: list[int] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, CIMultiDict(request.headers), body))
        self.answered.append(self.status)
        headers = {"Set-Cookie": self.set_cookie} if self.set_cookie else None
        return web.json_response({"ok": self.status < 300}, status=self.status, headers=headers)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path and r.headers.get("X-Loom-Event") != ""]


class TaskBackend(ThreadedAiohttpServer):
    """Answers every task with SUCCESS, or FAILED with ``error`` while ``fail`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False
        self.error = "upstream API answered 503"
        self.calls = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.fail:
            return web.json_response({"status": "FAILED", "error": self.error})
        return web.json_response({"status": "SUCCESS", "output": {"ok": True}})


class _Collect:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode())
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        transport = getattr(server, "transport", None)
        wrapped = transport is not None and transport.get_extra_info("ssl_object") is not None
        message["X-TLS"] = "yes" if wrapped or session.ssl is not None else "no"
        self.messages.append(message)
        return "250 OK"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost) and its key, written to ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpServer:
    """aiosmtpd on a free port. ``security``: ``none``, ``starttls`` (required) or ``tls``
    (implicit); ``users`` makes AUTH required (over TLS only)."""

    def __init__(
        self,
        *,
        security: str = "none",
        users: dict[str, str] | None = None,
        certs: tuple[Path, Path] | None = None,
    ) -> None:
        self.handler = _Collect()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        context = None
        if security != "none":
            assert certs is not None, "TLS needs a certificate"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(certs[0]), str(certs[1]))
        if security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=context)
        if users is not None:
            logins = self.handler.logins

            def check(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                login, password = data.login.decode(), data.password.decode()
                ok = isinstance(data, LoginPassword) and users.get(login) == password
                if ok:
                    logins.append(login)
                return AuthResult(success=ok, handled=False)

            kwargs.update(auth_required=True, auth_require_tls=True, authenticator=check)
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, server_hostname="localhost",
            **kwargs,
        )  # fmt: skip

    @property
    def messages(self) -> list[Message]:
        return self.handler.messages

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class PushService(ThreadedAiohttpServer):
    """A Web Push service on 127.0.0.1 standing in for a browser's (FCM, Mozilla's, Apple's),
    with the browser's side of the subscription.

    ``subscription(name)`` makes what a browser's ``PushSubscription.toJSON()`` gives: an
    endpoint here, its P-256 public key and auth secret (the private key stays here). Each POST
    is checked as a push service checks it: the VAPID ``Authorization: vapid t=…, k=…`` header
    (RFC 8292: an ES256 JWT whose ``aud`` is this origin, ``exp`` within 24 hours, ``sub`` a
    mailto: or https: contact, signed by the key ``k``), then decrypted as the browser would
    (RFC 8291, ``aes128gcm``, with ``http_ece``). ``gone`` names endpoints that answer 410.
    """

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, tuple[Any, bytes]] = {}
        self.messages: list[dict[str, Any]] = []  # verified and decrypted
        self.refused: list[str] = []  # why a request was refused
        self.gone: set[str] = set()

    def subscription(self, name: str) -> dict[str, Any]:
        import base64
        import os

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        private = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self.keys[name] = (private, auth)
        point = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        return {
            "endpoint": f"{self.url}/push/{name}",
            "expirationTime": None,
            "keys": {"p256dh": b64(point), "auth": b64(auth)},
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[-1]
        body = await request.read()
        try:
            vapid = verify_vapid(request.headers.get("Authorization", ""), origin=self.url)
            if request.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding {request.headers.get('Content-Encoding')!r}")
            if not request.headers.get("TTL", "").isdigit():
                raise ValueError("no TTL header (RFC 8030 requires one)")
            private, auth = self.keys[name]
            import http_ece

            plain = http_ece.decrypt(body, private_key=private, auth_secret=auth)
        except (ValueError, KeyError) as exc:
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return web.json_response({"error": str(exc)}, status=400 if name in self.keys else 404)
        if name in self.gone:
            return web.json_response({"error": "unsubscribed"}, status=410)
        self.messages.append(
            {
                "subscription": name,
                "vapid": vapid,
                "payload": json.loads(plain),
                "ttl": request.headers["TTL"],
            }
        )
        return web.Response(status=201)


def verify_vapid(header: str, *, origin: str) -> dict[str, Any]:
    """The claims of a valid RFC 8292 ``vapid`` Authorization header (else ValueError); the
    key that signed them under ``"k"``."""
    import base64
    import time

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    scheme, _, params = header.partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError(f"Authorization scheme {scheme!r} is not vapid")
    fields = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
    token, key = fields.get("t", ""), fields.get("k", "")
    head_b64, claims_b64, sig_b64 = token.split(".")
    head = json.loads(unb64(head_b64))
    claims = json.loads(unb64(claims_b64))
    if head.get("alg") != "ES256":
        raise ValueError(f"JWT alg {head.get('alg')!r} is not ES256")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(key))
    raw = unb64(sig_b64)
    if len(raw) != 64:
        raise ValueError("the JWT signature is not a raw 64-byte ES256 signature")
    signature = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    try:
        public.verify(signature, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise ValueError("the VAPID signature does not verify with k") from exc
    if claims.get("aud") != origin:
        raise ValueError(f"aud {claims.get('aud')!r} is not this push service ({origin})")
    now = time.time()
    if not now < int(claims.get("exp", 0)) <= now + 24 * 3600:
        raise ValueError(f"exp {claims.get('exp')} is not within the next 24 hours")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise ValueError(f"sub {claims.get('sub')!r} is not a mailto: or https: contact")
    return {**claims, "k": key}

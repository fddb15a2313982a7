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
    def __init__(self, *, port: int = 0, status: int = 200) -> None:
        super().__init__(port=port)
        self.status = status
        self.received: list[Received] = []
        self.answered: list[int] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, CIMultiDict(request.headers), body))
        self.answered.append(self.status)
        return web.json_response({"ok": self.status < 300}, status=self.status)

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

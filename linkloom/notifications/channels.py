"""Sending one notification to one channel, and the retry schedule between attempts.

* ``webhook``: ``POST`` of the notification as JSON, signed with ``linkloom.signing.sign`` using
  the channel's ``secret`` (else the server's signing key), plus ``X-Loom-Event`` and
  ``X-Loom-Delivery`` (stable across retries: receivers de-duplicate on it).
* ``slack``: a Slack-compatible incoming webhook: ``{"text": "<line> <link|Open>"}``.
* ``email``: SMTP through the standard library in a thread; ``security`` is ``none``,
  ``starttls`` or ``tls`` (certificates verified, against ``ca_file`` when set);
  ``username`` + the ``password`` secret log in when set.

A send never raises: it answers a ``SendResult`` whose ``retryable`` says whether another
attempt may succeed (timeouts, connection errors, HTTP 5xx/429/408, SMTP 4xx).
"""

from __future__ import annotations

import asyncio
import json
import random
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from linkloom import signing
from linkloom.notifications.models import Channel, ChannelKind, Notification

RETRYABLE_HTTP = frozenset({408, 425, 429})
SECURITY = ("none", "starttls", "tls")


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    ok: bool
    retryable: bool = False
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


def retry_delay(attempt: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds before attempt ``attempt + 1``: exponential from ``base``, capped, ±20 % jitter."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(delay * random.uniform(0.8, 1.2))  # jitter, not security


def problems(kind: ChannelKind, config: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """What keeps a channel of this kind from working (empty when it can be used)."""
    found: list[str] = []
    if kind is ChannelKind.WEBHOOK:
        url = str(config.get("url") or "")
        if not url.startswith(("http://", "https://")):
            found.append("config.url must be an http(s) URL")
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            found.append("config.headers must map header names to strings")
    elif kind is ChannelKind.SLACK:
        if not str(secrets.get("url") or "").startswith(("http://", "https://")):
            found.append("secrets.url must be the incoming-webhook URL (http or https)")
    elif kind is ChannelKind.EMAIL:
        if not config.get("host"):
            found.append("config.host (the SMTP server) is required")
        if not config.get("from"):
            found.append("config.from (the sender address) is required")
        to = config.get("to")
        if not to or not isinstance(to, list) or not all(isinstance(a, str) for a in to):
            found.append("config.to must be a non-empty list of addresses")
        if str(config.get("security", "starttls")) not in SECURITY:
            found.append("config.security must be none, starttls or tls")
        port = config.get("port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            found.append("config.port must be a port number")
    return found


class Senders:
    """Sends notifications over HTTP (webhook, Slack) and SMTP (email)."""

    def __init__(self, *, http: httpx.AsyncClient, signing_key: str, timeout: float = 10.0) -> None:
        self.http = http
        self.signing_key = signing_key
        self.timeout = timeout

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(
        self, channel: Channel, notification: Notification, *, delivery_id: str
    ) -> SendResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout + 5):
                if channel.kind is ChannelKind.EMAIL:
                    result = await asyncio.to_thread(self._send_email, channel, notification)
                else:
                    result = await self._send_http(channel, notification, delivery_id)
        except TimeoutError:
            result = SendResult(ok=False, retryable=True, error="timed out")
        except Exception as exc:  # a send must never escape the dispatcher
            result = SendResult(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        return SendResult(
            ok=result.ok,
            retryable=result.retryable,
            status_code=result.status_code,
            error=result.error,
            duration_ms=round(elapsed, 3),
        )

    # ---- HTTP ----------------------------------------------------------------------------
    async def _send_http(
        self, channel: Channel, notification: Notification, delivery_id: str
    ) -> SendResult:
        if channel.kind is ChannelKind.SLACK:
            url = channel.secrets.get("url", "")
            body = json.dumps(slack_payload(notification)).encode()
            headers = {"Content-Type": "application/json"}
        else:
            url = str(channel.config.get("url", ""))
            payload = {**notification.to_dict(), "channel": channel.name, "delivery": delivery_id}
            body = json.dumps(payload).encode()
            secret = channel.secrets.get("secret") or self.signing_key
            headers = {
                **{str(k): str(v) for k, v in (channel.config.get("headers") or {}).items()},
                "Content-Type": "application/json",
                "X-Loom-Event": notification.kind.value,
                "X-Loom-Delivery": delivery_id,
                **signing.sign(secret, body),
            }
        try:
            response = await self.http.post(
                url, content=body, headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:  # refused, reset, timed out: the receiver may come back
            return SendResult(ok=False, retryable=True, error=_describe(exc))
        code = response.status_code
        if 200 <= code < 300:
            return SendResult(ok=True, status_code=code)
        retryable = code >= 500 or code in RETRYABLE_HTTP
        snippet = one_line_body(response.content)
        return SendResult(
            ok=False, retryable=retryable, status_code=code, error=f"HTTP {code}{snippet}"
        )

    # ---- SMTP ----------------------------------------------------------------------------
    def _send_email(self, channel: Channel, notification: Notification) -> SendResult:
        config = channel.config
        host = str(config.get("host", ""))
        security = str(config.get("security", "starttls"))
        port = int(config.get("port") or (465 if security == "tls" else 587))
        message = email_message(channel, notification)
        context = ssl.create_default_context(cafile=config.get("ca_file") or None)
        if config.get("insecure_skip_verify"):  # self-signed relays in development only
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        smtp: smtplib.SMTP
        try:
            if security == "tls":
                smtp = smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(host, port, timeout=self.timeout)
            with smtp:
                if security == "starttls":
                    smtp.starttls(context=context)
                username = config.get("username")
                if username:
                    smtp.login(str(username), channel.secrets.get("password", ""))
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raw = exc.smtp_error
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            return SendResult(
                ok=False,
                retryable=400 <= exc.smtp_code < 500,
                status_code=exc.smtp_code,
                error=f"SMTP {exc.smtp_code}: {text}",
            )
        except smtplib.SMTPRecipientsRefused as exc:
            return SendResult(ok=False, retryable=False, error=f"recipients refused: {exc}")
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
        return SendResult(ok=True, status_code=250)


def slack_payload(notification: Notification) -> dict[str, Any]:
    text = _slack_escape(notification.text)
    if notification.link:
        text += f" <{notification.link}|Open in Link Loom>"
    return {"text": text}


def email_message(channel: Channel, notification: Notification) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = notification.subject
    message["From"] = str(channel.config.get("from", ""))
    message["To"] = ", ".join(channel.config.get("to") or [])
    message["X-Loom-Event"] = notification.kind.value
    body = notification.text
    if notification.link:
        body += f"\n\n{notification.link}"
    message.set_content(body + "\n")
    return message


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_line_body(content: bytes, *, limit: int = 200) -> str:
    text = " ".join(content[: limit * 2].decode(errors="replace").split())
    return f": {text[:limit]}" if text else ""


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or ("timed out" if isinstance(exc, httpx.TimeoutException) else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

"""Proof against real receivers: a local webhook server (aiohttp), a Slack-compatible endpoint on
it, and a local SMTP server (aiosmtpd), with the wired engine running real flows on SQLite."""

from __future__ import annotations

import asyncio
import time
from email.message import Message
from pathlib import Path

import pytest
from notify_harness import FLOW, Loom, all_sent, eventually

from linkloom import signing
from linkloom.engine.models import RunStatus
from linkloom.notifications.models import ChannelKind, DeliveryStatus, EventKind
from tests.support.notify_receivers import SmtpServer, WebhookReceiver, free_port, self_signed

LINK = "https://loom.example.test/runs/"


def _body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode().replace("\r\n", "\n")


async def test_notify_failing_run_sends_one_message_per_channel(
    loom: Loom, receiver: WebhookReceiver, smtp: SmtpServer
) -> None:
    await loom.apply_flow()
    channels = await loom.channels(webhook=receiver.url, smtp_port=smtp.port)
    await loom.rule(channels, quiet=300)

    run = await loom.run(fail=True)
    assert run.status is RunStatus.FAILED
    await all_sent(loom, 3)
    await asyncio.sleep(0.3)  # nothing else trickles in

    line = f"{FLOW} run {run.id} failed: step 'sync' failed: upstream API answered 503"
    hooks = [r for r in receiver.received if r.path == "/hook"]
    slacks = [r for r in receiver.received if r.path.startswith("/slack/")]
    assert len(hooks) == 1
    assert len(slacks) == 1
    assert len(smtp.messages) == 1

    hook = hooks[0]
    signing.verify("hook-secret-0123456789", hook.body, hook.headers)  # raises when wrong
    assert hook.headers["X-Loom-Event"] == "run_failed"
    assert hook.json["kind"] == "run_failed"
    assert hook.json["run_id"] == run.id
    assert hook.json["text"] == line
    assert hook.json["link"] == LINK + run.id
    assert hook.headers["X-Loom-Delivery"] == hook.json["delivery"]

    assert slacks[0].json == {"text": f"{line} <{LINK}{run.id}|Open in Link Loom>"}

    mail = smtp.messages[0]
    assert mail["Subject"] == f"[loom] {FLOW} failed"
    assert mail["X-Envelope-To"] == "oncall@example.test"
    assert _body(mail) == f"{line}\n\n{LINK}{run.id}\n"

    for delivery in await loom.deliveries():
        _found, attempts = await loom.notify.get_delivery(delivery.id)
        assert [(a.number, a.ok) for a in attempts] == [(1, True)]


async def test_notify_recovery_sends_one_message(loom: Loom, receiver: WebhookReceiver) -> None:
    await loom.apply_flow()
    hook = (await loom.channels(webhook=receiver.url))[0]
    await loom.rule([hook], quiet=0)

    failed = await loom.run(fail=True)
    await all_sent(loom, 1)
    recovered = await loom.run(fail=False)
    await all_sent(loom, 2)
    await loom.run(fail=False)  # a success after a success is no news
    await asyncio.sleep(0.3)

    kinds = [(r.json["kind"], r.json["run_id"]) for r in receiver.at("/hook")]
    assert kinds == [("run_failed", failed.id), ("run_recovered", recovered.id)]
    assert receiver.at("/hook")[1].json["text"] == (
        f"{FLOW} recovered: run {recovered.id} succeeded after failed runs"
    )


async def test_notify_flapping_flow_within_quiet_period_sends_one(
    loom: Loom, receiver: WebhookReceiver, smtp: SmtpServer
) -> None:
    await loom.apply_flow()
    channels = await loom.channels(webhook=receiver.url, smtp_port=smtp.port)
    await loom.rule(channels, quiet=3600)

    first = await loom.run(fail=True)
    for fail in (False, True, False, True, False):
        await loom.run(fail=fail)
    await all_sent(loom, 3)
    await asyncio.sleep(0.3)

    assert [r.json["run_id"] for r in receiver.at("/hook")] == [first.id]
    assert len([r for r in receiver.received if r.path.startswith("/slack/")]) == 1
    assert len(smtp.messages) == 1
    assert len(await loom.deliveries()) == 3


@pytest.mark.slow
async def test_notify_receiver_down_is_retried_without_blocking_the_engine(loom: Loom) -> None:
    """The webhook's port refuses connections while runs keep finishing; when the receiver
    comes up, every message arrives once, after logged failed attempts."""
    port = free_port()
    await loom.apply_flow()
    loom.notify.max_attempts = 100
    hook = await loom.notify.create_channel(
        name="down", kind=ChannelKind.WEBHOOK, config={"url": f"http://127.0.0.1:{port}/hook"}
    )
    await loom.rule([hook.id], quiet=0)

    started = time.perf_counter()
    runs = [await loom.run(fail=True) for _ in range(5)]
    elapsed = time.perf_counter() - started
    assert all(r.status is RunStatus.FAILED for r in runs)
    assert elapsed < 5, f"5 runs took {elapsed:.1f}s while the receiver was down"

    async def retried() -> bool:
        found = await loom.deliveries()
        return len(found) == 5 and all(d.attempts >= 2 for d in found)

    await eventually(retried, what="every delivery retried")
    assert all(d.status is not DeliveryStatus.SENT for d in await loom.deliveries())

    with WebhookReceiver(port=port) as receiver:
        await all_sent(loom, 5)
        await asyncio.sleep(0.3)
        got = sorted(r.json["run_id"] for r in receiver.at("/hook"))
    assert got == sorted(r.id for r in runs)
    delivery = (await loom.deliveries())[0]
    _found, attempts = await loom.notify.get_delivery(delivery.id)
    assert attempts[-1].ok
    assert not any(a.ok for a in attempts[:-1])
    assert len(attempts) >= 3
    assert all(a.error for a in attempts[:-1])


async def test_notify_gives_up_after_max_attempts(loom: Loom) -> None:
    await loom.apply_flow()
    loom.notify.max_attempts = 3
    with WebhookReceiver(status=503) as broken:
        hook = await loom.notify.create_channel(
            name="broken", kind=ChannelKind.WEBHOOK, config={"url": f"{broken.url}/hook"}
        )
        await loom.rule([hook.id], quiet=0)
        await loom.run(fail=True)

        async def failed() -> bool:
            found = await loom.deliveries()
            return bool(found) and found[0].status is DeliveryStatus.FAILED

        await eventually(failed, what="the delivery to give up")
        assert broken.answered == [503, 503, 503]
    delivery = (await loom.deliveries())[0]
    assert delivery.attempts == 3
    assert delivery.last_error == 'HTTP 503: {"ok": false}'


async def test_notify_test_message_reaches_email(loom: Loom, smtp: SmtpServer) -> None:
    mail = await loom.notify.create_channel(
        name="mail",
        kind=ChannelKind.EMAIL,
        config={
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "none",
            "from": "loom@example.test",
            "to": ["a@example.test", "b@example.test"],
        },
    )
    delivery = await loom.notify.send_test("mail")
    assert delivery.status is DeliveryStatus.SENT
    assert delivery.channel_id == mail.id
    assert len(smtp.messages) == 1
    assert smtp.messages[0]["X-Envelope-To"] == "a@example.test, b@example.test"
    assert "channel 'mail'" in _body(smtp.messages[0])


async def test_notify_dead_letter_and_sla_rules(loom: Loom, receiver: WebhookReceiver) -> None:
    await loom.apply_flow()
    hook = (await loom.channels(webhook=receiver.url))[0]
    await loom.notify.create_rule(
        name="letters and slow runs",
        events=[EventKind.DEAD_LETTER, EventKind.SLA_EXCEEDED],
        channels=[hook],
        quiet_seconds=0,
        sla_seconds=0.000001,
    )
    run = await loom.run(fail=True)
    await all_sent(loom, 2)
    kinds = sorted(r.json["kind"] for r in receiver.at("/hook"))
    assert kinds == ["dead_letter", "sla_exceeded"]
    letter = next(r.json for r in receiver.at("/hook") if r.json["kind"] == "dead_letter")
    assert letter["text"] == (
        f"{FLOW} step sync landed in the dead letters (run {run.id}): upstream API answered 503"
    )


def _mail_channel(port: int, **config: object) -> dict[str, object]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "from": "loom@example.test",
        "to": ["oncall@example.test"],
        **config,
    }


async def test_notify_email_over_starttls_with_login(loom: Loom, tmp_path: Path) -> None:
    certs = self_signed(tmp_path)
    with SmtpServer(security="starttls", users={"loom": "s3cret-password"}, certs=certs) as smtp:
        await loom.notify.create_channel(
            name="tls-mail",
            kind=ChannelKind.EMAIL,
            config=_mail_channel(
                smtp.port, security="starttls", username="loom", ca_file=str(certs[0])
            ),
            secrets={"password": "s3cret-password"},
        )
        sent = await loom.notify.send_test("tls-mail")
        assert sent.status is DeliveryStatus.SENT, sent.last_error
        assert smtp.handler.logins == ["loom"]
        assert smtp.messages[0]["X-TLS"] == "yes"

        await loom.notify.update_channel("tls-mail", secrets={"password": "wrong"})
        refused = await loom.notify.send_test("tls-mail")
        assert refused.status is DeliveryStatus.FAILED
        assert refused.last_error is not None
        assert refused.last_error.startswith("SMTP 535")
        assert len(smtp.messages) == 1


async def test_notify_email_over_implicit_tls_checks_the_certificate(
    loom: Loom, tmp_path: Path
) -> None:
    certs = self_signed(tmp_path)
    with SmtpServer(security="tls", certs=certs) as smtp:
        await loom.notify.create_channel(
            name="smtps",
            kind=ChannelKind.EMAIL,
            config=_mail_channel(smtp.port, security="tls", ca_file=str(certs[0])),
        )
        await loom.notify.create_channel(
            name="smtps-untrusted", kind=ChannelKind.EMAIL,
            config=_mail_channel(smtp.port, security="tls"),
        )  # fmt: skip
        assert (await loom.notify.send_test("smtps")).status is DeliveryStatus.SENT
        untrusted = await loom.notify.send_test("smtps-untrusted")
        assert untrusted.status is DeliveryStatus.FAILED
        assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.last_error or "")
        assert [m["X-TLS"] for m in smtp.messages] == ["yes"]


async def test_notify_webhooks_keep_no_cookies_between_deliveries(loom: Loom) -> None:
    """A receiver's Set-Cookie must not ride along on later deliveries (to it or another
    channel on that host): the sender keeps no cookie jar. A named host, since cookies of bare
    IP addresses are refused anyway."""
    with WebhookReceiver(set_cookie="session=from-receiver; Path=/") as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        await loom.notify.create_channel(
            name="cookie-hook", kind=ChannelKind.WEBHOOK, config={"url": f"{url}/hook"}
        )
        for _ in range(2):
            delivery = await loom.notify.send_test("cookie-hook")
            assert delivery.status is DeliveryStatus.SENT, delivery
        first, second = receiver.at("/hook")
        assert "Cookie" not in first.headers
        assert "Cookie" not in second.headers, second.headers["Cookie"]

"""Channel senders without a network: webhook signing and retry classification over
``httpx.MockTransport``, Slack payloads, email messages, validation, backoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from linkloom import signing
from linkloom.notifications import channels
from linkloom.notifications.models import Channel, ChannelKind, EventKind, Notification, mask

NOTE = Notification(
    kind=EventKind.RUN_FAILED,
    key="run_failed:r1",
    subject="[loom] report failed",
    text="report run r1 failed: a < b & c",
    link="https://loom.example.com/runs/r1",
    flow_id="report",
    run_id="r1",
    at=datetime(2026, 1, 1, tzinfo=UTC),
)


def _senders(handler: object) -> channels.Senders:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return channels.Senders(http=client, signing_key="server-key")


async def test_channels_webhook_is_signed_with_the_channel_secret() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    hook = Channel(
        id="c1", name="hook", kind=ChannelKind.WEBHOOK,
        config={"url": "https://hooks.example/x", "headers": {"X-Team": "ops"}},
        secrets={"secret": "channel-key"},
    )  # fmt: skip
    result = await _senders(handler).send(hook, NOTE, delivery_id="dlv_1")
    assert result.ok
    request = seen[0]
    signing.verify("channel-key", request.content, request.headers)
    assert request.headers["X-Team"] == "ops"
    assert request.headers["X-Loom-Delivery"] == "dlv_1"
    assert json.loads(request.content)["text"] == NOTE.text


async def test_channels_webhook_without_secret_uses_the_server_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    hook = Channel(id="c1", name="h", kind=ChannelKind.WEBHOOK, config={"url": "http://h/x"})
    await _senders(handler).send(hook, NOTE, delivery_id="d")
    signing.verify("server-key", seen[0].content, seen[0].headers)


async def test_channels_http_failures_are_classified() -> None:
    hook = Channel(id="c1", name="h", kind=ChannelKind.WEBHOOK, config={"url": "http://h/x"})
    for status, retryable in ((500, True), (503, True), (429, True), (400, False), (404, False)):
        result = await _senders(lambda _r, s=status: httpx.Response(s, text="nope")).send(
            hook, NOTE, delivery_id="d"
        )
        assert (result.ok, result.retryable, result.status_code) == (False, retryable, status)
        assert result.error == f"HTTP {status}: nope"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = await _senders(refuse).send(hook, NOTE, delivery_id="d")
    assert down.retryable
    assert down.error == "ConnectError: connection refused"


async def test_channels_slack_payload_escapes_and_links() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    slack = Channel(
        id="c2", name="s", kind=ChannelKind.SLACK, secrets={"url": "https://hooks.slack/T/B/X"}
    )
    assert (await _senders(handler).send(slack, NOTE, delivery_id="d")).ok
    assert str(seen[0].url) == "https://hooks.slack/T/B/X"
    assert json.loads(seen[0].content) == {
        "text": "report run r1 failed: a &lt; b &amp; c "
        "<https://loom.example.com/runs/r1|Open in Link Loom>"
    }


def test_channels_email_message_has_subject_recipients_and_link() -> None:
    mail = Channel(
        id="c3", name="m", kind=ChannelKind.EMAIL,
        config={"host": "smtp", "from": "loom@x", "to": ["a@x", "b@x"]},
    )  # fmt: skip
    message = channels.email_message(mail, NOTE)
    assert message["Subject"] == "[loom] report failed"
    assert message["To"] == "a@x, b@x"
    assert message.get_content() == f"{NOTE.text}\n\n{NOTE.link}\n"


def test_channels_problems_name_each_missing_setting() -> None:
    assert channels.problems(ChannelKind.WEBHOOK, {"url": "ftp://x"}, {}) == [
        "config.url must be an http(s) URL"
    ]
    assert channels.problems(ChannelKind.SLACK, {}, {}) == [
        "secrets.url must be the incoming-webhook URL (http or https)"
    ]
    assert channels.problems(
        ChannelKind.EMAIL, {"host": "h", "from": "f", "to": ["t"], "security": "ssl"}, {}
    ) == ["config.security must be none, starttls or tls"]
    assert channels.problems(ChannelKind.EMAIL, {"host": "h", "from": "f", "to": ["t"]}, {}) == []


def test_channels_retry_delay_doubles_and_caps() -> None:
    delays = [channels.retry_delay(n, base=2.0, cap=30.0) for n in range(1, 8)]
    assert 1.6 <= delays[0] <= 2.4
    assert 3.2 <= delays[1] <= 4.8
    assert all(d <= 36.0 for d in delays)
    assert delays[-1] >= 24.0


def test_channels_mask_shows_only_the_last_characters() -> None:
    assert mask("https://hooks.slack.com/services/T/B/SECRET") == "****CRET"
    assert mask("short") == "****"

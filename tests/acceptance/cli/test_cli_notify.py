"""``loom notify`` against a real API server: add a channel and a rule, send a test message to a
real receiver, list channels (masked), rules and deliveries; a failed test exits non-zero."""

from __future__ import annotations

import json

from cli_harness import CliServer, invoke

from tests.support.notify_receivers import WebhookReceiver, free_port


def test_cli_notify_channels_rules_test_and_deliveries(loom_env: CliServer) -> None:
    with WebhookReceiver() as receiver:
        added = invoke(
            "notify", "add-channel", "cli-hook", "--kind", "webhook",
            "--url", f"{receiver.url}/hook", "--secret", "secret=abcdefghijklmnop",
        )  # fmt: skip
        assert added.exit_code == 0, added.stdout + added.stderr
        assert "loom notify test cli-hook" in added.stdout
        rule = invoke(
            "notify", "add-rule", "failures", "--event", "run_failed",
            "--event", "run_recovered", "--channel", "cli-hook", "--quiet", "60",
        )  # fmt: skip
        assert rule.exit_code == 0, rule.stdout + rule.stderr

        sent = invoke("notify", "test", "cli-hook", "--text", "hello from the CLI")
        assert sent.exit_code == 0, sent.stdout + sent.stderr
        assert "test message sent to cli-hook" in sent.stdout
        assert [r.json["text"] for r in receiver.received] == ["hello from the CLI"]

    listed = invoke("notify", "channels", "-o", "json")
    channel = next(c for c in json.loads(listed.stdout) if c["name"] == "cli-hook")
    assert channel["secrets"] == {"secret": "****mnop"}
    assert "abcdefgh" not in listed.stdout
    rules = json.loads(invoke("notify", "rules", "-o", "json").stdout)
    assert any(r["events"] == ["run_failed", "run_recovered"] for r in rules)
    table = invoke("notify", "deliveries", "--channel", "cli-hook")
    assert table.exit_code == 0
    assert "hello from the CLI" in table.stdout
    assert "sent" in table.stdout


def test_cli_notify_test_to_a_down_receiver_exits_nonzero(loom_env: CliServer) -> None:
    port = free_port()
    invoke(
        "notify", "add-channel", "cli-down", "--kind", "webhook",
        "--url", f"http://127.0.0.1:{port}/hook",
    )  # fmt: skip
    failed = invoke("notify", "test", "cli-down")
    assert failed.exit_code == 6
    message = str(failed.exception)
    assert message.startswith("The test message to 'cli-down' failed: ")
    assert "Connect call failed" in message
    missing = invoke("notify", "test", "no-such-channel")
    assert missing.exit_code == 3

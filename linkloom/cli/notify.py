"""``loom notify``: notification channels, rules and deliveries, through the API.

    loom notify test ops-slack                      send a test message now (exit 6 if it failed)
    loom notify channels | rules | deliveries       list (deliveries: --channel/--status/--flow)
    loom notify add-channel ops-slack --kind slack --secret url=https://hooks.slack.com/…
    loom notify add-rule "report health" --flow daily-report --event run_failed \
        --event run_recovered --channel ops-slack --quiet 600
    loom notify remove-channel NAME | remove-rule RULE_ID
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import app, group
from linkloom.cli.connection import connect
from linkloom.cli.output import OutputFormat, OutputOption
from linkloom.errors import InvalidInput, Unavailable

notify_app = group("Notifications: channels, rules, deliveries, test messages.")
app.add_typer(notify_app, name="notify")

BASE = "/notifications"
CHANNEL_COLUMNS: list[out.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("KIND", "kind"),
    ("TARGET", lambda c: c["config"].get("url") or ", ".join(c["config"].get("to") or [])),
    ("SECRETS", lambda c: ", ".join(f"{k}={v}" for k, v in c["secrets"].items())),
    ("ENABLED", "enabled"),
]
RULE_COLUMNS: list[out.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("FLOW", lambda r: r.get("flow_id") or "(every flow)"),
    ("EVENTS", lambda r: ", ".join(r["events"])),
    ("CHANNELS", lambda r: ", ".join(r["channels"])),
    ("QUIET", lambda r: f"{r['quiet_seconds']:g}s"),
    ("ENABLED", "enabled"),
]
DELIVERY_COLUMNS: list[out.Column] = [
    ("ID", "id"),
    ("CREATED", lambda d: out.when(d.get("created_at"))),
    ("CHANNEL", "channel_id"),
    ("KIND", "kind"),
    ("STATUS", "status"),
    ("ATTEMPTS", lambda d: f"{d['attempts']}/{d['max_attempts']}"),
    ("MESSAGE", "text"),
    ("LAST ERROR", "last_error"),
]


class DeliveryFailed(Unavailable):
    """The test message to {channel!r} failed: {error}"""

    code = "delivery_failed"


@notify_app.command("test")
def send_test(
    channel: Annotated[str, typer.Argument(help="Channel name or id.")],
    text: Annotated[str, typer.Option(help="Message text (default: a test message).")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Send a test message to a channel now and say whether it arrived."""
    with connect() as loom:
        delivery = loom.post(f"{BASE}/channels/{channel}/test", {"text": text})
    if output is not OutputFormat.table:
        out.emit(delivery, output=output)
    if delivery["status"] != "sent":
        raise DeliveryFailed(channel=channel, error=delivery.get("last_error") or "unknown")
    if output is OutputFormat.table:
        typer.echo(f"test message sent to {channel} (delivery {delivery['id']})")


@notify_app.command("channels")
def channels(output: OutputOption = OutputFormat.table) -> None:
    """List channels (secrets masked)."""
    with connect() as loom:
        rows = list(loom.get(f"{BASE}/channels")["items"])
    out.emit(rows, columns=CHANNEL_COLUMNS, output=output, title="Channels", empty="no channels")


@notify_app.command("rules")
def rules(
    flow: Annotated[str | None, typer.Option(help="Only this flow's and global rules.")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List rules."""
    with connect() as loom:
        rows = list(loom.get(f"{BASE}/rules", flow=flow)["items"])
    out.emit(rows, columns=RULE_COLUMNS, output=output, title="Rules", empty="no rules")


@notify_app.command("deliveries")
def deliveries(
    channel: Annotated[str | None, typer.Option(help="Only this channel's.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, sending, sent or failed.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only about this flow.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List deliveries, newest first, with their attempts and last error."""
    with connect() as loom:
        rows = list(
            loom.get(f"{BASE}/deliveries", channel=channel, status=status, flow=flow, limit=limit)[
                "items"
            ]
        )
    out.emit(
        rows, columns=DELIVERY_COLUMNS, output=output, title="Deliveries", empty="no deliveries"
    )


@notify_app.command("add-channel")
def add_channel(
    name: Annotated[str, typer.Argument(help="A unique name, used in rules and 'notify test'.")],
    kind: Annotated[str, typer.Option(help="webhook, slack or email.")],
    url: Annotated[str | None, typer.Option(help="Webhook URL (webhook).")] = None,
    to: Annotated[
        list[str] | None, typer.Option(help="Recipient address (email; repeat for more).")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help='More settings as JSON, e.g. \'{"host": "smtp.x"}\'.')
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="NAME=VALUE: secret (webhook), url (slack), password (email)."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a channel."""
    settings: dict[str, Any] = _json_option(config, "--config")
    if url:
        settings["url"] = url
    if to:
        settings["to"] = list(to)
    secrets = dict(_pair(s) for s in secret or [])
    body = {"name": name, "kind": kind, "config": settings, "secrets": secrets}
    with connect() as loom:
        made = loom.post(f"{BASE}/channels", body)
    if output is not OutputFormat.table:
        out.emit(made, output=output)
        return
    typer.echo(f"channel {made['name']} ({made['id']}) created; try it: loom notify test {name}")


@notify_app.command("add-rule")
def add_rule(
    name: Annotated[str, typer.Argument(help="What the rule is for.")],
    event: Annotated[
        list[str],
        typer.Option(
            help="run_failed, run_recovered, dead_letter, sla_exceeded, proposal_ready, "
            "proposal_approved, proposal_promoted, flow_rolled_back, unreviewed_change, "
            "remote_refused (repeat for more)."
        ),
    ],
    channel: Annotated[list[str], typer.Option(help="Channel name or id (repeat for more).")],
    flow: Annotated[str | None, typer.Option(help="Only this flow (default: every flow).")] = None,
    quiet: Annotated[float, typer.Option(help="Quiet period in seconds.")] = 300.0,
    sla: Annotated[
        float | None, typer.Option(help="Expected run duration in seconds (sla_exceeded).")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a rule: which events (of which flow) go to which channels."""
    body = {
        "name": name,
        "events": list(event),
        "channels": list(channel),
        "flow_id": flow,
        "quiet_seconds": quiet,
        "sla_seconds": sla,
    }
    with connect() as loom:
        made = loom.post(f"{BASE}/rules", body)
    if output is not OutputFormat.table:
        out.emit(made, output=output)
        return
    typer.echo(f"rule {made['id']} created")


@notify_app.command("remove-channel")
def remove_channel(channel: Annotated[str, typer.Argument(help="Channel name or id.")]) -> None:
    """Delete a channel (rules stop sending to it)."""
    with connect() as loom:
        loom.call("DELETE", f"{BASE}/channels/{channel}")
    typer.echo(f"channel {channel} deleted")


@notify_app.command("remove-rule")
def remove_rule(rule_id: Annotated[str, typer.Argument(help="The rule id (rule_…).")]) -> None:
    """Delete a rule."""
    with connect() as loom:
        loom.call("DELETE", f"{BASE}/rules/{rule_id}")
    typer.echo(f"rule {rule_id} deleted")


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--secret takes NAME=VALUE, got {text.split('=')[0]!r}")
    return key.strip(), value


def _json_option(text: str | None, option: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{option} is not JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{option} must be a JSON object")
    return value

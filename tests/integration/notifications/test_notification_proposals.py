"""Proposal events through the wired API (real git repo, in-process sandbox): ready for review,
approved, promoted and rolled back each reach a real webhook receiver once, linking the
proposal (or flow) page."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from notify_harness import eventually

from linkloom.access import Role
from linkloom.notifications.models import ChannelKind, EventKind
from linkloom.sandbox.inprocess import InProcessRunner
from tests.acceptance.api.api_harness import BACKEND, Api, start_api
from tests.support.notify_receivers import WebhookReceiver

FLOW: dict[str, Any] = {
    "id": "report",
    "steps": [
        {"id": "fetch", "type": "http", "url": f"{BACKEND}/fetch"},
        {
            "id": "shape",
            "type": "transform",
            "depends_on": ["fetch"],
            "template": {"where": "{{ steps.fetch.output.path }}"},
        },
    ],
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    seed = tmp_path / "seed" / "report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(yaml.safe_dump(FLOW, sort_keys=False))
    url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    running, lifespan = await start_api(
        url,
        tmp_path,
        sandbox_runner=InProcessRunner(),
        flows={"seed_from": str(tmp_path / "seed")},
        server={"public_url": "https://loom.example.test"},
    )
    yield running
    await lifespan.__aexit__(None, None, None)


async def test_notify_proposal_lifecycle_reaches_reviewers(api: Api) -> None:
    notify = api.services.notifications
    assert notify is not None
    changed = copy.deepcopy(FLOW)
    changed["steps"][1]["template"]["where"] = "at {{ steps.fetch.output.path }}"
    with WebhookReceiver() as receiver:
        hook = await notify.create_channel(
            name="reviewers", kind=ChannelKind.WEBHOOK, config={"url": f"{receiver.url}/r"}
        )
        await notify.create_rule(
            name="proposals",
            events=[
                EventKind.PROPOSAL_READY,
                EventKind.PROPOSAL_APPROVED,
                EventKind.PROPOSAL_PROMOTED,
                EventKind.FLOW_ROLLED_BACK,
            ],
            channels=[hook.id],
        )
        async with api.client(Role.admin) as admin, api.client(Role.reviewer) as reviewer:
            await admin.post("/api/v1/repo/sync")
            run = (await admin.post("/api/v1/flows/report/runs", json={"inputs": {}})).json()
            await api.wait_run(run["id"])
            opened = await reviewer.post(
                "/api/v1/proposals",
                json={"title": "Say where", "specs": [yaml.safe_dump(changed)]},
            )
            proposal = opened.json()
            assert proposal["status"] == "ready-for-review", proposal
            await admin.post(f"/api/v1/proposals/{proposal['id']}/approve")
            await reviewer.post(f"/api/v1/proposals/{proposal['id']}/promote")
            await reviewer.post("/api/v1/flows/report/versions/1/promote")

        await eventually(lambda: len(receiver.received) >= 4, what="four messages")
        await asyncio.sleep(0.2)
    # Sent concurrently when several are due at once: compare in the lifecycle's order.
    order = ["proposal_ready", "proposal_approved", "proposal_promoted", "flow_rolled_back"]
    got = sorted(
        ((r.json["kind"], r.json["text"], r.json["link"]) for r in receiver.received),
        key=lambda m: order.index(m[0]),
    )
    page = f"https://loom.example.test/proposals/{proposal['id']}"
    pid = proposal["id"]
    assert got == [
        (
            "proposal_ready",
            f"Proposal {pid} \u201cSay where\u201d is ready for review: checks passed on "
            "revision 1; waiting for review",
            page,
        ),
        (
            "proposal_approved",
            f"Proposal {pid} \u201cSay where\u201d is approved: approved by admin-user; "
            "ready to promote",
            page,
        ),
        (
            "proposal_promoted",
            f"Proposal {pid} \u201cSay where\u201d was promoted: promoted by reviewer-user: "
            "report v2 now in production",
            page,
        ),
        (
            "flow_rolled_back",
            "report rolled back to version 1 by reviewer-user",
            "https://loom.example.test/flows/report",
        ),
    ]

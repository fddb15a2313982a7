"""Personal notifications on the fully wired app: preferences, the open app's stream, and Web
Push sent for real (pywebpush over HTTP) to a local push service that verifies the VAPID
signature (RFC 8292) and decrypts the payload (RFC 8291) as a browser's push service and the
browser would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkloom.access import Role
from linkloom.sandbox.inprocess import InProcessRunner
from tests.acceptance.api.api_harness import Api, flow_spec, start_api
from tests.acceptance.web.conftest import FLOW
from tests.acceptance.web.web_client import browser, csrf_of
from tests.support.notify_receivers import PushService


@pytest.fixture
async def push_api(tmp_path: Path) -> AsyncIterator[Api]:
    seed = tmp_path / "seed" / "report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(yaml.safe_dump(FLOW, sort_keys=False))
    running, lifespan = await start_api(
        f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
        tmp_path,
        sandbox_runner=InProcessRunner(),
        flows={"seed_from": str(tmp_path / "seed")},
        notifications={"web_push_insecure_endpoints": True},
    )
    async with running.client(Role.admin) as admin:
        assert (await admin.post("/api/v1/repo/sync")).status_code == 200
        put = await admin.put("/api/v1/flows/billing", json={"spec": flow_spec("billing")})
        assert put.status_code == 200
    yield running
    await lifespan.__aexit__(None, None, None)


@pytest.fixture
def push_service() -> Any:
    with PushService() as running:
        yield running


async def choose(api: Api, role: Role, *, events: list[str], flows: list[str]) -> str:
    """Save ``role``'s preferences through the page's form; the page's CSRF token."""
    async with browser(api, role) as client:
        page = await client.get("/me/notifications")
        token = csrf_of(page.text)
        saved = await client.post(
            "/me/notifications", data={"csrf": token, "event": events, "flow": flows}
        )
        assert saved.status_code == 303
        return token


async def subscribe(api: Api, role: Role, subscription: dict[str, Any]) -> Any:
    async with browser(api, role) as client:
        token = csrf_of((await client.get("/me/notifications")).text)
        return await client.post(
            "/me/push/subscribe", json=subscription, headers={"X-CSRF-Token": token}
        )


async def run_flow(api: Api, flow_id: str) -> str:
    async with api.client(Role.author) as author:
        made = await author.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": {"to": "x"}})
        run_id = str(made.json()["id"])
    await api.wait_run(run_id)
    await api.services.personal.drain()
    return run_id


async def test_web_push_reaches_a_closed_app_signed_and_encrypted(
    push_api: Api, push_service: PushService
) -> None:
    await choose(push_api, Role.author, events=["run_failed", "run_recovered"], flows=["billing"])
    async with browser(push_api, Role.author) as client:
        key = (await client.get("/me/push/key")).json()["publicKey"]
        again = (await client.get("/me/push/key")).json()["publicKey"]
        assert key == again  # generated once, then kept
    assert (
        await subscribe(push_api, Role.author, push_service.subscription("phone"))
    ).status_code == 201
    await choose(push_api, Role.viewer, events=["run_failed"], flows=["report"])
    assert (
        await subscribe(push_api, Role.viewer, push_service.subscription("other"))
    ).status_code == 201

    push_api.backend.fail.add("fetch")
    failed = await run_flow(push_api, "billing")
    assert push_service.refused == []
    (message,) = push_service.messages
    assert message["subscription"] == "phone"  # the viewer watches another flow
    assert message["payload"] == {
        "title": "Run failed: billing",
        "body": f"Run {failed} of billing: step 'fetch' failed: /fetch is broken",
        "url": f"/runs/{failed}",
        "tag": f"run_failed:{failed}",
    }
    assert message["vapid"]["k"] == key  # signed by the key browsers subscribed with
    assert message["vapid"]["aud"] == push_service.url
    assert message["vapid"]["sub"] == "mailto:linkloom@localhost"

    push_api.backend.fail.clear()
    recovered = await run_flow(push_api, "billing")
    assert push_service.messages[-1]["payload"]["title"] == "Recovered: billing"
    assert push_service.messages[-1]["payload"]["url"] == f"/runs/{recovered}"
    await run_flow(push_api, "billing")  # a second success is no news
    assert len(push_service.messages) == 2

    push_service.gone.add("phone")  # the user unsubscribed in the browser
    push_api.backend.fail.add("fetch")
    await run_flow(push_api, "billing")
    store = push_api.services.personal.store
    assert await store.subscriptions("author-user") == []  # 410 Gone removes it
    assert [s.endpoint for s in await store.subscriptions("viewer-user")] == [
        f"{push_service.url}/push/other"
    ]


async def test_web_notes_are_recorded_once_per_user_for_the_open_apps_stream(
    push_api: Api,
) -> None:
    """What the open app's stream (/me/notifications/live, driven in the browser test) reads."""
    await choose(push_api, Role.author, events=["run_failed"], flows=["billing"])
    push_api.backend.fail.add("fetch")
    first = await run_flow(push_api, "billing")
    second = await run_flow(push_api, "billing")
    personal = push_api.services.personal
    notes = await personal.store.notes_after("author-user", 0)
    assert [n.url for n in notes] == [f"/runs/{first}", f"/runs/{second}"]
    assert await personal.store.notes_after("author-user", notes[0].id) == notes[1:]
    assert await personal.store.last_note_id("author-user") == notes[1].id
    assert await personal.store.notes_after("viewer-user", 0) == []  # chose nothing
    async with push_api.client(Role.viewer) as viewer:  # told once, whatever happens again
        run = (await viewer.get(f"/api/v1/runs/{first}")).json()
    from linkloom.engine.records import Run

    replay = await push_api.services.runs.get_run(run["id"])
    assert isinstance(replay, Run)
    assert await personal.deliver((await personal.run_events(replay))[0]) == []


async def test_web_proposal_notes_go_to_reviewers_and_the_author(
    push_api: Api, push_service: PushService
) -> None:
    await choose(push_api, Role.reviewer, events=["review_requested"], flows=[])
    await choose(push_api, Role.author, events=["review_requested", "own_proposal"], flows=[])
    await subscribe(push_api, Role.reviewer, push_service.subscription("reviewer"))
    await subscribe(push_api, Role.author, push_service.subscription("author"))
    changed = yaml.safe_load(yaml.safe_dump(FLOW))
    changed["steps"][1]["template"]["to"] = "team {{ inputs.to }}"
    async with push_api.client(Role.author) as author:
        opened = await author.post(
            "/api/v1/proposals", json={"title": "Team", "specs": [yaml.safe_dump(changed)]}
        )
        assert opened.json()["status"] == "ready-for-review"
        pid = opened.json()["id"]
    async with push_api.client(Role.reviewer) as reviewer:
        assert (await reviewer.post(f"/api/v1/proposals/{pid}/approve")).status_code == 200
        assert (await reviewer.post(f"/api/v1/proposals/{pid}/promote")).status_code == 200
    await push_api.services.personal.drain()
    got = [(m["subscription"], m["payload"]["title"]) for m in push_service.messages]
    assert got == [
        ("reviewer", "Review requested: Team"),  # not the author: it is their own proposal
        ("author", "Approved: Team"),
        ("author", "Promoted: Team"),
    ]
    assert all(m["payload"]["url"] == f"/proposals/{pid}" for m in push_service.messages)


async def test_web_push_subscriptions_refuse_what_no_browser_sends(push_api: Api) -> None:
    good = {"keys": {"p256dh": "B" * 87, "auth": "a" * 22}}
    for endpoint, wanted in (
        ("http://push.example/x", "must be an https URL"),
        ("ftp://push.example/x", "must be an https URL"),
        ("", "'endpoint' is missing"),
    ):
        refused = await subscribe(push_api, Role.author, {**good, "endpoint": endpoint})
        assert refused.status_code == 422
        assert wanted in refused.json()["error"]
    short = await subscribe(
        push_api, Role.author, {"endpoint": "https://push.example/x", "keys": {"p256dh": "x"}}
    )
    assert short.status_code == 422
    async with browser(push_api, Role.author) as client:
        no_token = await client.post("/me/push/subscribe", json=good)
        assert no_token.status_code == 403
    async with browser(push_api) as anonymous:
        assert (await anonymous.post("/me/push/subscribe", json=good)).status_code == 401
    await asyncio.sleep(0)

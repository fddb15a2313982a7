"""The proposal diff tells the truth, proven end to end with a flow unlike the examples.

A real server (uvicorn, the real engine and HTTP transport, SQLite or PostgreSQL) runs a
``pricing`` flow against a real shop API on loopback: a GET with ``query:`` (and a secret in the
query and, filtered, in a header), a POST with a body of its own, a transform that applies
filters to a secret, a condition and two branches. Production runs it for four inputs, one of
which fails. Then, through the CLI and the API, exactly as a team would:

(a) a one-line transform change shows that step, and only it, changed in every case: no
    "sent differently", no unrecorded request; ``loom proposal checks --wait`` exits 8;
(b) a schedule-only change shows no result difference at all; the checks exit 0;
(c) after a promotion and a rollback, a proposal is diffed against the rolled-back production,
    not against the version that recorded the cases (those still reproduce, on their version);
(d) a fix of the failing case shows it newly passing;
(e) a new endpoint fails the check without a stub (exit 1) and, with a stub in the proposal,
    lets the steps after it run and be diffed;
(f) promotion is refused while the policy on main is unmet (two approvals, an owner, an
    approval given after a check that needs attention) and a failed diff blocks it outright.

Secrets: the flow's secret, in every filtered form, appears nowhere: not in any table (a
``pg_dump`` on PostgreSQL, the database file on SQLite), not in the flows repo's history, not in
the API's answers. Each scenario runs on SQLite with the process sandbox and on PostgreSQL with
the docker sandbox, and the other way round.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from linkloom import config, logs, wiring
from linkloom.access import Role
from linkloom.api.app import create_app
from linkloom.cli.main import app as loom_app
from linkloom.errors import LinkloomError
from linkloom.sandbox.docker import docker_available, image_exists
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore
from tests.support import databases
from tests.support.real import require
from tests.support.servers import ThreadedUvicorn
from tests.support.shop_backend import ShopBackend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # ~100 s on a quiet machine

SECRET = "Sh0pKey-7f3a9c21e4"
SECRET_FORMS = {
    "upper": SECRET.upper(),
    "reverse": SECRET[::-1],
    "join": ".".join(SECRET),
    "slice": SECRET[2:11],
}
IMAGE = "linkloom/sandbox:latest"
GROSS = (
    "{{ (steps.order.output.total * (1 - steps.order.output.discount)"
    " * steps.rates.outputs.rate) | round(2) }}"
)
FIXED_GROSS = (
    "{{ (steps.order.output.total * (1 - (steps.order.output.discount | default(0)))"
    " * steps.rates.outputs.rate) | round(2) }}"
)
INPUTS = [
    {"region": "eu", "items": [{"qty": 2, "price": 50}, {"qty": 1, "price": 30}]},  # 140.4: alert
    {"region": "us", "items": [{"qty": 1, "price": 20}, {"qty": 1, "price": 10}]},  # 27.0: note
    {"region": "uk", "items": [{"qty": 3, "price": 40}, {"qty": 1, "price": 5}]},  # 146.25
    {"region": "eu", "items": [{"qty": 1, "price": 10}]},  # one line, no discount: total fails
]


def pricing(backend: str) -> dict[str, Any]:
    return {
        "id": "pricing",
        "description": "Price an order for a region; tell sales about the big ones.",
        "inputs": {
            "region": {"type": "string", "default": "eu"},
            "items": {"type": "array"},
        },
        "schedules": [{"id": "hourly", "cron": "0 * * * *", "timezone": "Europe/Kyiv"}],
        "steps": [
            {
                "id": "rates",
                "type": "http",
                "method": "GET",
                "url": f"{backend}/rates",
                "query": {
                    "region": "{{ inputs.region }}",
                    "currency": "EUR",
                    "key": "{{ secrets.shop_key }}",
                },
                "headers": {"Authorization": "Bearer {{ secrets.shop_key | upper }}"},
                "retry": {"max_attempts": 1},
                "outputs": {"rate": "{{ response.body.rate }}"},
            },
            {
                "id": "order",
                "type": "http",
                "method": "POST",
                "url": f"{backend}/orders",
                "depends_on": ["rates"],
                "body": {"items": "{{ inputs.items }}", "region": "{{ inputs.region }}"},
                "retry": {"max_attempts": 1},
            },
            {
                "id": "total",
                "type": "transform",
                "depends_on": ["order"],
                "template": {
                    "gross": GROSS,
                    "lines": "{{ steps.order.output.lines }}",
                    "up": "{{ secrets.shop_key | upper }}",
                    "rev": "{{ secrets.shop_key | reverse }}",
                    "joined": "{{ secrets.shop_key | join('.') }}",
                    "head": "{{ secrets.shop_key[2:11] }}",
                },
            },
            {
                "id": "big",
                "type": "condition",
                "depends_on": ["total"],
                "condition": "{{ steps.total.output.gross > 100 }}",
                "then": ["alert"],
                "else": ["note"],
            },
            {
                "id": "alert",
                "type": "http",
                "method": "POST",
                "url": f"{backend}/notify",
                "depends_on": ["big"],
                "body": {
                    "gross": "{{ steps.total.output.gross }}",
                    "region": "{{ inputs.region }}",
                },
                "retry": {"max_attempts": 1},
            },
            {
                "id": "note",
                "type": "transform",
                "depends_on": ["big"],
                "template": {"text": "small order: {{ steps.total.output.gross }}"},
            },
        ],
    }


def dump(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False)


# ------------------------------------------------------------------------------- the server


@dataclass
class World:
    url: str
    tokens: dict[str, str]
    home: Path
    db_url: str
    backend: ShopBackend
    services: wiring.Services
    checkout: Path

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=120,
        )

    def loom(self, who: str, *args: str) -> tuple[int, str]:
        """``loom ARGS`` as ``who``; (exit code, output)."""
        env = {"LOOM_SERVER_URL": self.url, "LOOM_TOKEN": self.tokens[who], "COLUMNS": "200"}
        result = CliRunner().invoke(loom_app, list(args), env=env)
        code = result.exit_code
        if isinstance(result.exception, LinkloomError):
            code = result.exception.exit_code
        elif result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return code, result.stdout

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        with self.client("admin") as api:
            started = api.post("/flows/pricing/runs", json={"inputs": inputs})
            assert started.status_code == 201, started.text
            run_id = started.json()["id"]
            deadline = time.monotonic() + 60
            while True:
                run = api.get(f"/runs/{run_id}").json()
                if run["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    return run
                assert time.monotonic() < deadline, run
                time.sleep(0.05)

    def propose(self, who: str, spec: dict[str, Any], title: str, **files: str) -> dict[str, Any]:
        body: dict[str, Any] = {"title": title, "files": {"flows/pricing/flow.yaml": dump(spec)}}
        body["files"].update(files)
        with self.client(who) as api:
            opened = api.post("/proposals", json=body)
        assert opened.status_code == 201, opened.text
        return opened.json()

    def diff(self, proposal_id: str) -> dict[str, Any]:
        with self.client("viewer") as api:
            found: dict[str, Any] = api.get(f"/proposals/{proposal_id}/diff").json()
        return found

    def act(self, who: str, proposal_id: str, action: str) -> httpx.Response:
        with self.client(who) as api:
            return api.post(f"/proposals/{proposal_id}/{action}")


async def _tokens(db_url: str) -> dict[str, str]:
    db = session.Database(db_url)
    try:
        store = SqlTokenStore(db)
        people = {
            "admin": Role.admin,
            "alice": Role.author,
            "bob": Role.reviewer,
            "carol": Role.reviewer,
            "viewer": Role.viewer,
        }
        out = {}
        for name, role in people.items():
            secret, _ = await store.create(name=name, role=role, now=datetime.now(UTC))
            out[name] = secret
        return out
    finally:
        await db.dispose()


@pytest.fixture(
    params=[("sqlite", "process"), ("postgres", "docker")], ids=["sqlite-process", "pg-docker"]
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    store, sandbox = request.param
    if sandbox == "docker":
        require(docker_available(), "no Docker engine: run scripts/provision-docker")
        require(image_exists(IMAGE), f"no sandbox image {IMAGE}: run scripts/provision-docker")
    with contextlib.ExitStack() as stack:
        if store == "postgres":
            db_url = stack.enter_context(databases.fresh_database("truth", migrate=True))
        else:
            db_url = databases.sqlite_url(databases.migrated_sqlite(tmp_path / "loom.db"))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            tokens = pool.submit(asyncio.run, _tokens(db_url)).result()
        backend = stack.enter_context(ShopBackend())
        seed = tmp_path / "seed" / "pricing"
        seed.mkdir(parents=True)
        (seed / "flow.yaml").write_text(dump(pricing(backend.url)))
        server = ThreadedUvicorn()
        settings = config.load_settings(
            home=tmp_path,
            database={"url": db_url},
            server={"run_scheduler": False, "port": server.port, "public_url": server.url},
            engine={
                "poll_interval": 0.05,
                "recent_fixture_runs": 10,
                "recent_failed_fixture_runs": 5,
            },
            security={"signing_key": "truthful-diff-signing-key", "required_approvals": 1},
            flows={"seed_from": str(tmp_path / "seed")},
            sandbox={"backend": sandbox, "image": IMAGE, "wall_clock_seconds": 120},
            secrets={"shop_key": SECRET},
        )
        logs.configure(settings, fmt="json", level="WARNING", stream=io.StringIO())
        stack.callback(logs.reset)
        services = wiring.build_services(settings)
        stack.enter_context(server.serving(create_app(settings, services)))
        yield World(
            url=server.url,
            tokens=tokens,
            home=tmp_path,
            db_url=db_url,
            backend=backend,
            services=services,
            checkout=tmp_path / "checkout",
        )


# ------------------------------------------------------------------------------- helpers


def steps_of(case: dict[str, Any]) -> dict[str, str]:
    return {s["step_id"]: s["change"] for s in case["steps"]}


def only_reproducible(diff: dict[str, Any]) -> list[dict[str, Any]]:
    cases = diff["flows"]["pricing"]["cases"]
    assert all(c["reproducible"] for c in cases), [c["not_reproducible"] for c in cases]
    return list(cases)


def promote(world: World, proposal_id: str, *approvers: str) -> dict[str, Any]:
    for who in approvers:
        approved = world.act(who, proposal_id, "approve")
        assert approved.status_code == 200, approved.text
    promoted = world.act("bob", proposal_id, "promote")
    assert promoted.status_code == 200, promoted.text
    return dict(promoted.json())


# ------------------------------------------------------------------------------- the proof


def test_proposals_tell_the_truth(world: World) -> None:
    base = pricing(world.backend.url)
    with world.client("admin") as api:
        assert api.post("/repo/sync").status_code == 200
    runs = [world.run(inputs) for inputs in INPUTS]
    assert [r["status"] for r in runs] == ["SUCCEEDED"] * 3 + ["FAILED"]

    # Production sent the GET with its query and no body, the POST with its own body.
    gets = world.backend.sent("GET", "/rates")
    assert gets[0].query == {"region": "eu", "currency": "EUR", "key": SECRET}
    assert gets[0].body is None
    assert world.backend.sent("POST", "/orders")[0].body == {
        "items": INPUTS[0]["items"],
        "region": "eu",
    }
    with world.client("viewer") as api:
        exchanges = api.get(f"/runs/{runs[0]['id']}/exchanges").json()
    get = next(x for x in exchanges if x["step_id"] == "rates")
    assert get["url"].startswith(f"{world.backend.url}/rates?")
    assert "region=eu" in get["url"]
    assert "currency=EUR" in get["url"]
    assert "key=%2A%2A%2A" in get["url"] or "key=***" in get["url"]
    assert get["request"]["body"] is None

    # (a) a one-line transform change: that step changed, nothing sent differently.
    labelled = copy.deepcopy(base)
    labelled["steps"][2]["template"]["lines"] = "{{ steps.order.output.lines }} line(s)"
    a = world.propose("alice", labelled, "Label the line count")
    diff = world.diff(a["id"])
    assert diff["status"] == "attention", diff["summary"]
    cases = only_reproducible(diff)
    assert len(cases) == 4
    for case in cases:
        assert case["unrecorded"] == [], case
        assert case["changed_requests"] == [], case
        expected = dict.fromkeys(steps_of(case), "unchanged")
        if case["production_status"] == "SUCCEEDED":
            expected["total"] = "changed"
            (change,) = next(s for s in case["steps"] if s["step_id"] == "total")["changes"]
            assert change["path"] == "output.lines"
        assert steps_of(case) == expected, case
        assert case["source"]["flow_version"] == 1
        assert case["source"]["run_id"]
        assert case["inputs"]["region"] in ("eu", "us", "uk")
    (finding,) = diff["flows"]["pricing"]["findings"]
    assert finding["text"].startswith("total: output.lines")
    assert finding["text"].endswith("in 3 of 4 case(s)")
    code, text = world.loom("alice", "proposal", "checks", a["id"], "--wait")
    assert code == 8, text
    assert "total: output.lines" in text
    # The plan's spec diff is of the texts in git: the one line, nothing re-ordered.
    with world.client("viewer") as api:
        (flow_plan,) = api.get(f"/proposals/{a['id']}/plan").json()["flows"]
    edits = [
        line
        for line in flow_plan["spec_diff"].splitlines()
        if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    assert [line[0] for line in edits] == ["-", "+"], flow_plan["spec_diff"]
    assert "line(s)" in edits[1]
    assert "line(s)" not in edits[0]

    # (b) a schedule-only change: no result difference at all.
    rescheduled = copy.deepcopy(base)
    rescheduled["schedules"][0]["cron"] = "30 * * * *"
    b = world.propose("alice", rescheduled, "Half past")
    diff = world.diff(b["id"])
    assert diff["status"] == "passed", diff["summary"]
    with world.client("viewer") as api:
        plan_text = "\n".join(api.get(f"/proposals/{b['id']}/plan").json()["text"])
    assert ":30 Europe/Kyiv (" in plan_text, plan_text
    assert ":30 UTC)" in plan_text, plan_text
    for case in only_reproducible(diff):
        assert set(steps_of(case).values()) == {"unchanged"}
        assert not case["changed_requests"]
        assert not case["unrecorded"]
    assert world.loom("alice", "proposal", "checks", b["id"], "--wait")[0] == 0
    assert world.loom("alice", "proposal", "diff", b["id"])[0] == 0

    # (f) the policy on main: two approvals, one from an owner; attention needs a fresh one.
    policy = "required_approvals: 2\nowners: [carol]\n"
    p = world.propose(
        "alice", base, "Pricing is owned by carol", **{"flows/pricing/policy.yaml": policy}
    )
    promote(world, p["id"], "bob")
    code, text = world.loom("bob", "proposal", "promote", a["id"])
    assert code == 4, text  # stale: main moved
    assert world.act("alice", a["id"], "rebase").status_code == 200
    assert world.act("bob", a["id"], "approve").status_code == 200
    refused = world.act("bob", a["id"], "promote")
    assert refused.status_code == 409
    assert "1 of 2 approval(s)" in refused.json()["detail"]
    assert "owners: carol" in refused.json()["detail"]
    code, text = world.loom("viewer", "proposal", "show", a["id"])
    assert "promotion blocked" in text
    assert "owners of pricing: carol" in text
    assert world.act("carol", a["id"], "approve").status_code == 200
    with world.client("alice") as api:  # the checks run again: attention needs new approvals
        api.post(f"/proposals/{a['id']}/checks")
    refused = world.act("bob", a["id"], "promote")
    assert refused.status_code == 409
    assert "needs attention" in refused.json()["detail"]
    promoted = promote(world, a["id"], "carol", "bob")
    assert promoted["status"] == "promoted"
    version_2 = promoted["promoted_versions"]["pricing"]
    v2_runs = [world.run(inputs) for inputs in INPUTS[:2]]
    assert all(r["flow_version"] == version_2 for r in v2_runs)

    # (c) roll back; a proposal is diffed against the rolled-back production.
    code, text = world.loom("bob", "flow", "rollback", "pricing", "--to", "1")
    assert code == 0, text
    c = world.propose("alice", rescheduled, "Half past, again")
    diff = world.diff(c["id"])
    assert diff["status"] == "passed", diff["summary"]
    cases = only_reproducible(diff)
    assert {case["source"]["flow_version"] for case in cases} >= {1, version_2}
    for case in cases:
        assert set(steps_of(case).values()) == {"unchanged"}, case

    # (d) fixing the failing case shows it newly passing.
    fixed = copy.deepcopy(base)
    fixed["steps"][2]["template"]["gross"] = FIXED_GROSS
    d = world.propose("alice", fixed, "Orders of one line have no discount")
    diff = world.diff(d["id"])
    assert diff["status"] == "attention", diff["summary"]
    failing = [c for c in only_reproducible(diff) if c["production_status"] == "FAILED"]
    assert failing
    assert all(c["proposed_status"] == "SUCCEEDED" for c in failing)
    for case in failing:
        assert steps_of(case)["total"] == "newly_passing"
    assert diff["flows"]["pricing"]["summary"]["newly_passing"] == len(failing)
    passing = [c for c in only_reproducible(diff) if c["production_status"] == "SUCCEEDED"]
    assert all(set(steps_of(c).values()) == {"unchanged"} for c in passing)

    # (e) a call production never made: failed without a stub, diffed with one.
    audited = copy.deepcopy(base)
    audited["steps"].insert(
        3,
        {
            "id": "audit",
            "type": "http",
            "method": "POST",
            "url": f"{world.backend.url}/audit",
            "depends_on": ["total"],
            "body": {"gross": "{{ steps.total.output.gross }}"},
            "retry": {"max_attempts": 1},
        },
    )
    audited["steps"].insert(
        4,
        {
            "id": "audited",
            "type": "transform",
            "depends_on": ["audit"],
            "template": {
                "ok": "{{ steps.audit.output.ok }}",
                "seen": "{{ steps.audit.output.gross }}",
            },
        },
    )
    e = world.propose("alice", audited, "Audit every total")
    diff = world.diff(e["id"])
    assert diff["status"] == "failed", diff["summary"]
    text = " ".join(f["text"] for f in diff["flows"]["pricing"]["findings"])
    assert f"would have called POST {world.backend.url}/audit" in text
    code, _ = world.loom("alice", "proposal", "checks", e["id"], "--wait")
    assert code == 1
    assert world.act("bob", e["id"], "approve").status_code == 200
    assert world.act("carol", e["id"], "approve").status_code == 200
    refused = world.act("bob", e["id"], "promote")
    assert refused.status_code == 409
    assert "check diff is failed" in refused.json()["detail"]
    stubs = (
        "stubs:\n"
        "  - name: audit\n"
        "    method: POST\n"
        f"    url: {world.backend.url}/audit\n"
        "    response:\n"
        "      status: 200\n"
        "      body: {ok: true, gross: '{{ request.body.gross }}'}\n"
    )
    with world.client("alice") as api:
        revised = api.post(
            f"/proposals/{e['id']}/revisions",
            json={"files": {"flows/pricing/fixtures/stubs.yaml": stubs}, "message": "stub it"},
        )
    assert revised.status_code == 200, revised.text
    diff = world.diff(e["id"])
    assert diff["status"] == "attention", diff["summary"]
    for case in only_reproducible(diff):
        steps = steps_of(case)
        assert case["unrecorded"] == []
        if case["production_status"] == "SUCCEEDED":
            assert steps["audit"] == "added"
            assert steps["audited"] == "added"
            assert [s["stub"] for s in case["stubbed"]] == ["audit"]
    assert world.loom("alice", "proposal", "checks", e["id"], "--wait")[0] == 8

    # Secrets: not in any table, not in the repo, not in what the API answers.
    _assert_no_secret(world)


def _assert_no_secret(world: World) -> None:
    forms = {"secret": SECRET, **SECRET_FORMS}
    with world.client("admin") as api:
        answers = [
            api.get("/runs", params={"limit": 100}).text,
            *(api.get(f"/runs/{r['id']}").text for r in api.get("/runs").json()["items"]),
            *(api.get(f"/runs/{r['id']}/exchanges").text for r in api.get("/runs").json()["items"]),
            *(
                api.get(f"/proposals/{p['id']}/checks").text
                for p in api.get("/proposals").json()["items"]
            ),
        ]
    for name, form in forms.items():
        assert all(form not in text for text in answers), name
    if world.db_url.startswith("sqlite"):
        blobs = b"".join(p.read_bytes() for p in world.home.glob("loom.db*"))
    else:
        url = world.db_url.replace("postgresql+psycopg://", "postgresql://")
        blobs = subprocess.run(
            ["pg_dump", "--no-owner", url], capture_output=True, check=True, timeout=120
        ).stdout
    for name, form in forms.items():
        assert form.encode() not in blobs, f"the {name} of the secret is stored in the database"
    repo = world.home / "flows"
    history = subprocess.run(
        ["git", "-C", str(repo), "log", "--all", "-p"], capture_output=True, check=True
    ).stdout
    assert b"shop_key" in history  # the template is there, never the value
    for name, form in forms.items():
        assert form.encode() not in history, f"the {name} of the secret is in the flows repo"

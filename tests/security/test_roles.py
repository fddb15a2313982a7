"""The role × route matrix, generated from the live server's ``/openapi.json``.

``ROLES`` is the role model written down once, independently of the code: which role each
operation needs (viewer < author < reviewer < admin), which ones authenticate by signature and
which are public. The openapi document and the table must name the same operations, so a new
route fails here until someone decides who may call it. Then, on a real ``loom server`` on SQLite
and on PostgreSQL:

* no token, malformed tokens and a revoked token get 401, roles below the route's 403, and none
  of these refusals writes anything (no row in any table, no git ref or object, no file);
* roles at or above the route's get past the check, and nothing answers 5xx;
* every mutating operation, called successfully by the lowest role allowed, leaves an audit
  entry naming the caller (``EXEMPT_FROM_AUDIT`` says why the few others do not);
* nobody approves their own proposal, whatever their role.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from linkloom import signing
from linkloom.access import Role
from tests.support import hostile
from tests.support.hostile import KINDS, SIGNING_KEY, HostileServer, dump, plain_flow

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

V, A, R, ADMIN = Role.viewer, Role.author, Role.reviewer, Role.admin
SIGNED = "signed"  # an HMAC signature instead of a token (webhooks, callbacks)
PUBLIC = "public"  # probes and metrics: no credentials at all

API = "/api/v1"
ROLES: dict[tuple[str, str], Role | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # flows
    ("GET", f"{API}/secrets"): A,  # names only, for loom validate --server
    ("GET", f"{API}/flows"): V,
    ("GET", f"{API}/flows/{{flow_id}}"): V,
    ("PUT", f"{API}/flows/{{flow_id}}"): ADMIN,
    ("DELETE", f"{API}/flows/{{flow_id}}"): ADMIN,
    ("GET", f"{API}/flows/{{flow_id}}/versions"): V,
    ("GET", f"{API}/flows/{{flow_id}}/versions/{{version}}"): V,
    ("POST", f"{API}/flows/{{flow_id}}/rollback"): ADMIN,
    ("POST", f"{API}/flows/{{flow_id}}/pause"): A,
    ("POST", f"{API}/flows/{{flow_id}}/resume"): A,
    ("POST", f"{API}/flows/{{flow_id}}/runs"): A,
    ("GET", f"{API}/flows/{{flow_id}}/schedules"): V,
    ("POST", f"{API}/flows/{{flow_id}}/backfill"): A,
    ("GET", f"{API}/flows/{{flow_id}}/triggers"): V,
    ("GET", f"{API}/flows/{{flow_id}}/history"): V,
    ("POST", f"{API}/flows/{{flow_id}}/versions/{{version}}/promote"): R,
    ("GET", f"{API}/flows/{{flow_id}}/fixtures/drift"): V,
    # runs
    ("GET", f"{API}/runs"): V,
    ("GET", f"{API}/runs/{{run_id}}"): V,
    ("GET", f"{API}/runs/{{run_id}}/steps"): V,
    ("GET", f"{API}/runs/{{run_id}}/steps/{{step_id}}/items"): V,
    ("GET", f"{API}/runs/{{run_id}}/attempts"): V,
    ("GET", f"{API}/runs/{{run_id}}/events"): V,
    ("GET", f"{API}/runs/{{run_id}}/logs"): V,
    ("GET", f"{API}/runs/{{run_id}}/exchanges"): V,
    ("GET", f"{API}/runs/{{run_id}}/fixture"): V,
    ("POST", f"{API}/runs/{{run_id}}/cancel"): A,
    ("POST", f"{API}/runs/{{run_id}}/retry"): A,
    ("GET", f"{API}/runs/{{run_id}}/stream"): V,
    ("GET", f"{API}/stream"): V,
    ("GET", f"{API}/dead-letters"): V,
    ("POST", f"{API}/dead-letters/redrive"): A,
    # access
    ("GET", f"{API}/me"): V,
    ("GET", f"{API}/tokens"): ADMIN,
    ("POST", f"{API}/tokens"): ADMIN,
    ("DELETE", f"{API}/tokens/{{token_id}}"): ADMIN,
    ("GET", f"{API}/audit"): R,
    # inbound, signed
    ("POST", f"{API}/webhooks/{{flow_id}}/{{trigger_id}}"): SIGNED,
    ("POST", f"{API}/callbacks/{{token}}"): SIGNED,
    ("POST", f"{API}/callbacks/{{token}}/heartbeat"): SIGNED,
    ("POST", f"{API}/git/webhooks/github"): SIGNED,
    ("POST", f"{API}/git/webhooks/gitlab"): SIGNED,
    ("POST", f"{API}/git/webhooks/gitea"): SIGNED,
    # proposals
    ("GET", f"{API}/proposals"): V,
    ("POST", f"{API}/proposals"): A,
    ("GET", f"{API}/proposals/{{proposal_id}}"): V,
    ("POST", f"{API}/proposals/{{proposal_id}}/revisions"): A,
    ("GET", f"{API}/proposals/{{proposal_id}}/checks"): V,
    ("POST", f"{API}/proposals/{{proposal_id}}/checks"): A,
    ("GET", f"{API}/proposals/{{proposal_id}}/plan"): V,
    ("GET", f"{API}/proposals/{{proposal_id}}/diff"): V,
    ("POST", f"{API}/proposals/{{proposal_id}}/comments"): A,
    ("POST", f"{API}/proposals/{{proposal_id}}/approve"): R,
    ("POST", f"{API}/proposals/{{proposal_id}}/request-changes"): R,
    ("POST", f"{API}/proposals/{{proposal_id}}/rebase"): A,
    ("POST", f"{API}/proposals/{{proposal_id}}/promote"): R,
    ("POST", f"{API}/proposals/{{proposal_id}}/close"): A,
    ("GET", f"{API}/proposals/{{proposal_id}}/pull-request"): V,
    ("GET", f"{API}/proposals/{{proposal_id}}/report"): V,
    ("POST", f"{API}/repo/sync"): ADMIN,
    ("GET", f"{API}/repo/remote"): V,
    ("POST", f"{API}/repo/remote/fetch"): ADMIN,
    ("POST", f"{API}/git/ci"): A,
    # notifications: channels and rules hold secrets and reach people, so admins only
    ("GET", f"{API}/notifications/channels"): ADMIN,
    ("POST", f"{API}/notifications/channels"): ADMIN,
    ("GET", f"{API}/notifications/channels/{{channel}}"): ADMIN,
    ("PATCH", f"{API}/notifications/channels/{{channel}}"): ADMIN,
    ("DELETE", f"{API}/notifications/channels/{{channel}}"): ADMIN,
    ("POST", f"{API}/notifications/channels/{{channel}}/test"): ADMIN,
    ("GET", f"{API}/notifications/rules"): ADMIN,
    ("POST", f"{API}/notifications/rules"): ADMIN,
    ("GET", f"{API}/notifications/rules/{{rule_id}}"): ADMIN,
    ("PATCH", f"{API}/notifications/rules/{{rule_id}}"): ADMIN,
    ("DELETE", f"{API}/notifications/rules/{{rule_id}}"): ADMIN,
    ("GET", f"{API}/notifications/deliveries"): V,
    ("GET", f"{API}/notifications/deliveries/{{delivery_id}}"): V,
    # pull-mode workers complete steps: author
    ("GET", f"{API}/workers"): V,
    ("POST", f"{API}/workers"): A,
    ("POST", f"{API}/workers/{{worker_id}}/heartbeat"): A,
    ("DELETE", f"{API}/workers/{{worker_id}}"): A,
    ("POST", f"{API}/queues/poll"): A,
    ("POST", f"{API}/tasks/{{token}}/result"): A,
}
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
# Mutating operations that write no audit entry, and why.
EXEMPT_FROM_AUDIT = {
    # keep a step alive; they change nothing anyone decided (linkloom/api/routes/inbound.py)
    ("POST", f"{API}/callbacks/{{token}}/heartbeat"),
    # a pull-mode worker's own protocol; what it does to runs is recorded in their events
    ("POST", f"{API}/workers"),
    ("POST", f"{API}/workers/{{worker_id}}/heartbeat"),
    ("DELETE", f"{API}/workers/{{worker_id}}"),
    ("POST", f"{API}/queues/poll"),
    ("POST", f"{API}/tasks/{{token}}/result"),
    # need a flows remote and a forge: their audit entries are tested with one, in
    # tests/integration/gitops/ and tests/e2e/test_gitops_remote.py
    ("POST", f"{API}/repo/remote/fetch"),
    ("POST", f"{API}/git/webhooks/github"),
    ("POST", f"{API}/git/webhooks/gitlab"),
    ("POST", f"{API}/git/webhooks/gitea"),
    ("POST", f"{API}/git/ci"),
}
STREAMS = {f"{API}/stream", f"{API}/runs/{{run_id}}/stream"}
LOWEST = {V: "viewer", A: "author", R: "reviewer", ADMIN: "admin"}
# What a caller without a valid token may send: each must be a 401.
BAD_CREDENTIALS: dict[str, dict[str, str]] = {
    "no token": {},
    "empty bearer": {"Authorization": "Bearer"},
    "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "unknown token": {"Authorization": "Bearer loom_" + "A" * 43},
    "garbage": {"Authorization": "Bearer ../../etc/passwd' OR '1'='1"},
    "very long": {"Authorization": "Bearer loom_" + "x" * 8000},
    "non-ascii": {"Authorization": "Bearer loom_\xe9\xe8".encode("latin-1")},  # type: ignore[dict-item]
}


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> HostileServer:
    return hostile.shared(request)


def operations(server: HostileServer) -> set[tuple[str, str]]:
    document = server.client(None).get("/openapi.json")
    assert document.status_code == 200
    return {
        (method.upper(), path)
        for path, item in document.json()["paths"].items()
        for method in item
        if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE")
    }


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "nothing-here", path)


def call(
    server: HostileServer, who: str | None, method: str, path: str, headers: Any = None
) -> int:
    """One request to ``path`` (ids filled with one that exists nowhere); the status. A stream
    that opens counts as 200."""
    client = server.client(who)
    body = None if method in ("GET", "DELETE") else b"{}"
    kwargs: dict[str, Any] = {"content": body, "headers": {"Content-Type": "application/json"}}
    if headers is not None:
        kwargs["headers"] = {**kwargs["headers"], **headers}
    if path in STREAMS:
        try:
            with client.stream(method, _url(path), timeout=1.5, **kwargs) as response:
                return response.status_code
        except httpx.ReadTimeout:
            return 200
    return client.request(method, _url(path), **kwargs).status_code


def test_the_role_table_names_every_operation_of_the_openapi_document(
    server: HostileServer,
) -> None:
    found = operations(server)
    assert found - set(ROLES) == set(), "new operations: add them to ROLES with the role needed"
    assert set(ROLES) - found == set(), "operations gone from the API: remove them from ROLES"


def test_refused_callers_get_401_or_403_and_write_nothing(server: HostileServer) -> None:
    before = server.snapshot()
    unexpected = []
    checked = 0
    for (method, path), needed in sorted(ROLES.items(), key=lambda item: item[0][::-1]):
        if needed in (SIGNED, PUBLIC):
            continue
        assert isinstance(needed, Role)
        for label, headers in BAD_CREDENTIALS.items():
            status = call(server, None, method, path, headers)
            if status != 401:
                unexpected.append((method, path, label, status))
        status = call(server, hostile.REVOKED, method, path)
        if status != 401:
            unexpected.append((method, path, "revoked token", status))
        for who, role in hostile.PEOPLE.items():
            if not role.allows(needed):
                status = call(server, who, method, path)
                if status != 403:
                    unexpected.append((method, path, who, status))
        checked += 1
    assert unexpected == []
    assert checked > 60
    assert before.changes(server.snapshot()) == []
    assert server.alive()


def test_allowed_callers_get_past_the_check_and_nothing_answers_5xx(server: HostileServer) -> None:
    unexpected = []
    for (method, path), needed in ROLES.items():
        if needed == SIGNED:
            status = call(server, "admin", method, path)  # a token is no signature
            if status not in (401, 404):
                unexpected.append((method, path, "admin token on a signed route", status))
            continue
        for who, role in hostile.PEOPLE.items():
            if needed == PUBLIC or role.allows(needed):  # type: ignore[arg-type]
                status = call(server, who, method, path)
                if status in (401, 403) or status >= 500:
                    unexpected.append((method, path, who, status))
    # /readyz may say 503 by design only while the server is not ready; this one is.
    assert unexpected == []


# ---- audit: every mutating operation, allowed, leaves an entry ---------------------------------


class Exerciser:
    """Calls operations as the lowest role allowed and checks each leaves an audit entry."""

    def __init__(self, server: HostileServer) -> None:
        self.server = server
        self.done: set[tuple[str, str]] = set()

    def __call__(
        self,
        method: str,
        template: str,
        url: str,
        *,
        who: str | None = None,
        expect: int | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        needed = ROLES[(method, API + template)]
        who = who or (LOWEST[needed] if isinstance(needed, Role) else None)
        before = self.server.audit()[0]["id"] if self.server.audit() else 0
        response = self.server.client(who).request(method, API + url, **kwargs)
        assert response.is_success, (template, response.status_code, response.text)
        if expect is not None:
            assert response.status_code == expect
        entries = [e for e in self.server.audit() if e["id"] > before]
        assert entries, f"{method} {template} wrote no audit entry"
        if who is not None:
            assert who in {e["actor"] for e in entries}, (template, entries)
        self.done.add((method, API + template))
        return response


def _signed(body: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    return {
        "content": raw,
        "headers": {**signing.sign(SIGNING_KEY, raw), "Content-Type": "application/json"},
    }


def _wait(condition: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_every_mutating_operation_leaves_an_audit_entry(server: HostileServer) -> None:
    step = Exerciser(server)
    viewer = server.client("viewer")
    backend = server.backend.url
    fid = f"audited-{server.kind}"
    flow = plain_flow(fid, backend)
    f = "/flows/{flow_id}"

    step("PUT", f, f"/flows/{fid}", json={"spec": flow})
    step("PUT", f, f"/flows/{fid}", json={"spec": {**flow, "description": "v2"}})
    step("POST", f + "/rollback", f"/flows/{fid}/rollback", json={"version": 1})
    step("POST", f + "/pause", f"/flows/{fid}/pause")
    step("POST", f + "/resume", f"/flows/{fid}/resume")
    run = step("POST", f + "/runs", f"/flows/{fid}/runs", json={"inputs": {}}).json()
    assert server.wait_run(run["id"])["status"] == "SUCCEEDED"
    step("POST", f + "/backfill", f"/flows/{fid}/backfill",
         json={"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"})  # fmt: skip
    step("POST", "/webhooks/{flow_id}/{trigger_id}", f"/webhooks/{fid}/push", **_signed({}))

    # A failed run: retried, and its dead letter re-driven.
    broken = {**flow, "id": f"{fid}-broken", "triggers": []}
    broken["steps"] = [{**flow["steps"][0], "url": f"{backend}/missing"}]
    step("PUT", f, f"/flows/{broken['id']}", json={"spec": broken})
    failed = server.client("author").post(f"{API}/flows/{broken['id']}/runs", json={}).json()
    assert server.wait_run(failed["id"])["status"] == "FAILED"
    step("POST", "/runs/{run_id}/retry", f"/runs/{failed['id']}/retry")
    server.wait_run(failed["id"])
    letters = _wait(
        lambda: [
            d
            for d in viewer.get(f"{API}/dead-letters", params={"limit": 1000}).json()["items"]
            if d["run_id"] == failed["id"]
        ]
    )
    step("POST", "/dead-letters/redrive", "/dead-letters/redrive",
         json={"ids": [letters[0]["id"]], "on": "current_version"})  # fmt: skip

    # A run waiting for its callback: one completed by a signed callback, one cancelled.
    waiting = {**flow, "id": f"{fid}-async", "triggers": []}
    waiting["steps"] = [{"id": "wait", "type": "http", "url": f"{backend}/async",
                         "mode": "async", "heartbeat_timeout": "60s"}]  # fmt: skip
    step("PUT", f, f"/flows/{waiting['id']}", json={"spec": waiting})
    seen = len(server.backend.callbacks)
    first = server.client("author").post(f"{API}/flows/{waiting['id']}/runs", json={}).json()
    callback = _wait(lambda: server.backend.callbacks[seen:])[0]
    path = httpx.URL(callback["url"]).path.removeprefix(API)
    step("POST", "/callbacks/{token}", path, **_signed({"status": "SUCCESS", "output": {}}))
    assert server.wait_run(first["id"])["status"] == "SUCCEEDED"
    second = server.client("author").post(f"{API}/flows/{waiting['id']}/runs", json={}).json()
    _wait(lambda: len(server.backend.callbacks) > seen + 1)
    step("POST", "/runs/{run_id}/cancel", f"/runs/{second['id']}/cancel")

    made = step("POST", "/tokens", "/tokens", json={"name": "short-lived", "role": "viewer"})
    step("DELETE", "/tokens/{token_id}", f"/tokens/{made.json()['id']}")

    # Proposals: two, so that one can be rebased after the other is promoted.
    changed = {**flow, "description": "proposed"}
    p = "/proposals/{proposal_id}"
    one_file = {f"flows/{fid}/flow.yaml": dump(changed)}
    one = step("POST", "/proposals", "/proposals", json={"title": "one", "files": one_file})
    two_file = {f"flows/{fid}-two/flow.yaml": dump({**flow, "id": f"{fid}-two"})}
    two = step("POST", "/proposals", "/proposals", who="author2",
               json={"title": "two", "files": two_file})  # fmt: skip
    one, two = one.json(), two.json()
    step("POST", p + "/revisions", f"/proposals/{one['id']}/revisions",
         json={"files": {f"flows/{fid}/flow.yaml": dump({**changed, "tags": ["x"]})}})  # fmt: skip
    step("POST", p + "/checks", f"/proposals/{one['id']}/checks")
    step("POST", p + "/comments", f"/proposals/{one['id']}/comments", json={"body": "fine?"})
    step("POST", p + "/request-changes", f"/proposals/{one['id']}/request-changes",
         json={"comment": "tags?"})  # fmt: skip
    step("POST", p + "/approve", f"/proposals/{one['id']}/approve")
    step("POST", p + "/promote", f"/proposals/{one['id']}/promote")
    step("POST", p + "/rebase", f"/proposals/{two['id']}/rebase", who="author2")
    step("POST", p + "/close", f"/proposals/{two['id']}/close", who="author2")
    step("POST", "/flows/{flow_id}/versions/{version}/promote", f"/flows/{fid}/versions/1/promote")
    step("POST", "/repo/sync", "/repo/sync")

    n = "/notifications"
    hook = {"name": f"hook-{fid}", "kind": "webhook", "config": {"url": f"{backend}/notify"}}
    step("POST", n + "/channels", n + "/channels", json=hook)
    step("PATCH", n + "/channels/{channel}", f"{n}/channels/hook-{fid}", json={"enabled": True})
    step("POST", n + "/channels/{channel}/test", f"{n}/channels/hook-{fid}/test")
    rule_in = {"name": "r", "flow_id": fid, "events": ["run_failed"], "channels": [f"hook-{fid}"]}
    rule = step("POST", n + "/rules", n + "/rules", json=rule_in)
    rule_id = rule.json()["id"]
    step("PATCH", n + "/rules/{rule_id}", f"{n}/rules/{rule_id}", json={"quiet_seconds": 60})
    step("DELETE", n + "/rules/{rule_id}", f"{n}/rules/{rule_id}")
    step("DELETE", n + "/channels/{channel}", f"{n}/channels/hook-{fid}")

    step("DELETE", f, f"/flows/{fid}")

    mutating = {op for op in operations(server) if op[0] in MUTATING}
    assert mutating - step.done - EXEMPT_FROM_AUDIT == set(), "exercise it above, or exempt it"
    assert step.done & EXEMPT_FROM_AUDIT == set()


def test_nobody_approves_their_own_proposal(server: HostileServer) -> None:
    spec = plain_flow("plain", server.backend.url)
    for who in ("author", "reviewer", "admin"):
        opened = server.client(who).post(
            f"{API}/proposals",
            json={
                "title": f"mine, by {who}",
                "files": {"flows/plain/flow.yaml": dump({**spec, "description": who})},
                "background": True,
            },
        )
        assert opened.status_code == 201, opened.text
        pid = opened.json()["id"]
        refused = server.client(who).post(f"{API}/proposals/{pid}/approve")
        assert refused.status_code == 403, (who, refused.text)
        if who != "author":
            assert refused.json()["code"] == "self_approval"
        shown = server.client("viewer").get(f"{API}/proposals/{pid}").json()
        assert shown["approvers"] == []
        assert shown["status"] != "approved"
        closed = server.client(who).post(f"{API}/proposals/{pid}/close")
        assert closed.status_code == 200, closed.text

"""Paths and refs injected into every route that touches the flows repo, on a real ``loom server``
(SQLite and PostgreSQL): proposal files, refs, flow ids, fixture names, versions, branch names,
proposal ids. Each hostile value gets a clear 4xx (never a 5xx, never a 2xx) and nothing is
written: the flows repo's refs, objects and files (``.git/config`` and hooks included), every
table's rows and the files under the server's home are as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from typer.testing import CliRunner

from linkloom.cli.main import app as loom_app
from tests.support import hostile
from tests.support.hostile import KINDS, HostileServer, dump, plain_flow
from tests.support.servers import ThreadedAiohttpServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API = "/api/v1"
# Names that must never become a path, a ref or a command-line option.
NAMES = [
    "..",
    "../..",
    "../../../../etc/passwd",
    "/etc/passwd",
    ".git",
    ".git/config",
    ".git/hooks/pre-commit",
    "x/../../.git/HEAD",
    "a\x00b",
    "a\nb",
    "a\rb",
    "main\n",
    "plain\n",
    "-rf",
    "--upload-pack=touch pwned",
    "--output=/tmp/pwned",
    "x" * 5000,
    "ünïcødé-ﬂow",
    "a b",
    "$(touch pwned)",
    "a;touch pwned",
    "~",
    "HEAD@{1}",
    "refs/heads/main:refs/heads/x",
    "main..x",
    "x.lock",
    "\u202eevil",
]
# Repo paths a proposal may try to write; each must be refused before anything is committed.
PATHS = [
    "..",
    "../outside.yaml",
    "/etc/passwd",
    "/tmp/pwned.yaml",
    ".git/config",
    ".git/hooks/pre-commit",
    "flows/plain/.git/config",
    "flows/plain/../../.git/config",
    "flows/plain/fixtures/../../../.git/hooks/post-commit",
    "flows/./plain/flow.yaml",
    "flows//plain/flow.yaml",
    "flows/plain/flow.yaml\x00.txt",
    "flows/plain/flow.yaml\n",
    "flows/-plain/flow.yaml",
    "flows/" + "x" * 4000 + "/flow.yaml",
    "flows/plain/fixtures/" + "y" * 300 + ".yaml",
    "flows/ünïcødé/flow.yaml",
    "flows/a b/flow.yaml",
    "flows\\plain\\flow.yaml",
    "flows/plain/flow.yaml/",
    "",
]


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> HostileServer:
    return hostile.shared(request)


@pytest.fixture(scope="module")
def proposal(server: HostileServer) -> str:
    """An open proposal to revise (by ``author``)."""
    spec = {**plain_flow("plain", server.backend.url), "description": "injection target"}
    opened = server.client("author").post(
        f"{API}/proposals",
        json={"title": "target", "files": {"flows/plain/flow.yaml": dump(spec)}},
    )
    assert opened.status_code == 201, opened.text
    return str(opened.json()["id"])


@pytest.fixture(scope="module")
def run_id(server: HostileServer) -> str:
    started = server.client("author").post(f"{API}/flows/plain/runs", json={"inputs": {}})
    assert started.status_code == 201, started.text
    server.wait_run(started.json()["id"])
    return str(started.json()["id"])


def segment(name: str) -> str:
    """``name`` as one URL path segment (dots too, so no client or proxy folds ``..``)."""
    return quote(name, safe="").replace(".", "%2E")


def raw_request(server: HostileServer, who: str, method: str, path: str, **kw: Any) -> Any:
    """A request whose path is sent exactly as written (already percent-encoded)."""
    client = server.client(who)
    request = client.build_request(method, "/", **kw)
    request.url = request.url.copy_with(raw_path=path.encode("ascii"))
    return client.send(request)


class Refusals:
    """Collects the answers that are not a clear 4xx."""

    def __init__(self) -> None:
        self.bad: list[tuple[str, str, int, str]] = []
        self.count = 0

    def check(self, what: str, value: str, response: httpx.Response) -> None:
        self.count += 1
        status = response.status_code
        clear = 400 <= status < 500 and status not in (401, 403)
        if clear and response.headers.get("content-type", "").endswith("json"):
            body = response.json()
            clear = bool(body.get("detail") or body.get("title"))
        if not clear:
            self.bad.append((what, repr(value)[:60], status, response.text[:200]))


@pytest.fixture
def refusals(server: HostileServer) -> Iterator[Refusals]:
    """Yields the collector; then asserts every answer was a clear 4xx and nothing changed."""
    before = server.settled_snapshot()
    found = Refusals()
    yield found
    assert found.bad == []
    assert found.count > 10
    assert before.changes(server.snapshot()) == []
    assert server.alive()


def test_proposal_files_outside_the_flows_tree_are_refused(
    server: HostileServer, refusals: Refusals
) -> None:
    author = server.client("author")
    for path in PATHS:
        body = {"title": "hostile path", "files": {path: "id: plain\nsteps: []\n"}}
        refusals.check("open files", path, author.post(f"{API}/proposals", json=body))
        deletion = {"title": "hostile deletion", "files": {path: None}}
        refusals.check("open delete", path, author.post(f"{API}/proposals", json=deletion))


def test_proposal_revisions_with_hostile_files_are_refused(
    server: HostileServer, proposal: str, refusals: Refusals
) -> None:
    author = server.client("author")
    for path in PATHS:
        body = {"files": {path: "x: 1\n"}, "message": "hostile"}
        refusals.check(
            "revise files", path, author.post(f"{API}/proposals/{proposal}/revisions", json=body)
        )


def test_proposal_refs_and_spec_ids_are_refused(server: HostileServer, refusals: Refusals) -> None:
    author = server.client("author")
    for name in NAMES:
        body = {"title": "hostile ref", "ref": name}
        refusals.check("open ref", name, author.post(f"{API}/proposals", json=body))
        spec = {**plain_flow("plain", server.backend.url), "id": name}
        body = {"title": "hostile id", "specs": [dump(spec)]}
        refusals.check("open spec id", name, author.post(f"{API}/proposals", json=body))


def test_hostile_proposal_ids_in_paths_are_refused(
    server: HostileServer, refusals: Refusals
) -> None:
    actions = {
        "author": ["revisions", "checks", "comments", "rebase", "close"],
        "reviewer": ["approve", "request-changes", "promote"],
    }
    bodies = {"revisions": {"files": {}}, "comments": {"body": "x"}}
    for name in NAMES:
        pid = segment(name)
        for who, names in actions.items():
            for action in names:
                response = raw_request(
                    server, who, "POST", f"{API}/proposals/{pid}/{action}", json=bodies.get(action)
                )
                refusals.check(f"proposal {action}", name, response)
        for view in ("", "/checks", "/plan", "/diff", "/report", "/pull-request"):
            response = raw_request(server, "viewer", "GET", f"{API}/proposals/{pid}{view}")
            refusals.check(f"proposal GET{view}", name, response)


def test_hostile_flow_ids_and_versions_are_refused(
    server: HostileServer, refusals: Refusals
) -> None:
    for name in NAMES:
        fid = segment(name)
        spec = {**plain_flow("plain", server.backend.url), "id": name}
        calls = [
            ("admin", "PUT", f"/flows/{fid}", {"spec": spec}),
            ("admin", "PUT", f"/flows/{fid}", {"spec": plain_flow("plain", server.backend.url)}),
            ("admin", "DELETE", f"/flows/{fid}", None),
            ("admin", "POST", f"/flows/{fid}/rollback", {"version": 1}),
            ("reviewer", "POST", f"/flows/{fid}/versions/1/promote", None),
            ("reviewer", "POST", f"/flows/plain/versions/{fid}/promote", None),
            ("author", "POST", f"/flows/{fid}/runs", {"inputs": {}}),
            ("viewer", "GET", f"/flows/{fid}/history", None),
            ("viewer", "GET", f"/flows/{fid}/fixtures/drift", None),
            ("viewer", "GET", f"/flows/plain/versions/{fid}", None),
        ]
        for who, method, path, body in calls:
            response = raw_request(server, who, method, API + path, json=body)
            refusals.check(f"{method} {path.split('/', 3)[-1]}", name, response)
    admin = server.client("admin")
    for version in (0, -1, 2**31, 2**63, 10**30, "1; rm -rf /", "../1", None, 1.5, [1]):
        refusals.check(
            "rollback version",
            str(version),
            admin.post(f"{API}/flows/plain/rollback", json={"version": version}),
        )
    for version in ("0", "-1", "99999999999999999999", "1e3", "%2E%2E", "1%00"):
        response = raw_request(server, "reviewer", "POST", f"{API}/flows/plain/versions/"
                               f"{version}/promote")  # fmt: skip
        refusals.check("promote version", version, response)


def test_hostile_fixture_names_are_refused(
    server: HostileServer, run_id: str, refusals: Refusals
) -> None:
    viewer = server.client("viewer")
    for name in NAMES:
        if name in ("main..x", "x.lock"):
            continue  # hostile as refs, harmless as file names
        response = viewer.get(f"{API}/runs/{run_id}/fixture", params={"name": name})
        refusals.check("fixture name", name, response)
        response = raw_request(server, "viewer", "GET", f"{API}/runs/{segment(name)}/fixture")
        refusals.check("fixture run id", name, response)


def test_ci_mode_refuses_hostile_refs_repos_and_files(
    server: HostileServer, refusals: Refusals
) -> None:
    author = server.client("author")
    head = server.git("rev-parse", "main").strip()
    base = {"forge": "github", "repo": "team/flows", "number": 7, "head": head}
    for name in NAMES:
        for field in ("base", "head_ref", "repo"):
            body = {**base, field: name}
            refusals.check(f"ci {field}", name, author.post(f"{API}/git/ci", json=body))
    for path in PATHS:
        body = {**base, "files": {path: "x: 1\n"}}
        refusals.check("ci files", path, author.post(f"{API}/git/ci", json=body))


class HostileLoom(ThreadedAiohttpServer):
    """A server (or a man in the middle) answering a fixture export with a path outside."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "flows/plain/fixtures/../../../../outside.yaml"
        return web.json_response({"name": "x", "flow_id": "plain", "path": path, "yaml": "x: 1\n"})


def test_fixture_export_writes_nothing_outside_the_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "a" / "checkout"
    checkout.mkdir(parents=True)
    with HostileLoom() as fake:
        result = CliRunner().invoke(
            loom_app,
            ["fixtures", "export", "some-run", "--to", str(checkout)],
            env={"LOOM_SERVER_URL": fake.url, "LOOM_TOKEN": "loom_x"},
        )
    assert getattr(result.exception, "exit_code", result.exit_code) == 2, result.output
    assert "outside" in str(result.exception or result.output)
    assert list(tmp_path.rglob("*.yaml")) == []

"""Hostile sizes against a real server (uvicorn, SQLite and PostgreSQL): every body has a limit,
proposals have limits per file, per request and per author and hour, companion files are read
before they are committed, and a refused request writes nothing: the flows repo's refs and object
count and every table's row count are the same after it.

The server runs with small limits so the attacks stay cheap; ``test_defaults_*`` checks the
shipped defaults.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
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
import sqlalchemy as sa

from linkloom import config, logs, wiring
from linkloom.access import Role
from linkloom.api.app import create_app
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore
from tests.support import databases
from tests.support.servers import ThreadedUvicorn

pytestmark = [pytest.mark.timeout(600)]

KIB = 1024
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
BODY = {"max_body_bytes": 128 * KIB, "max_proposal_body_bytes": 512 * KIB}
LIMITS = {
    "max_file_bytes": 64 * KIB,
    "max_bytes": 160 * KIB,
    "max_files": 20,
    "author_bytes_per_hour": 400 * KIB,
    "author_revisions_per_hour": 3,
    "branch_retention_days": 0.5 / 86_400,  # half a second
}
AUTHORS = ("admin", "ann", "bob", "cat", "dan", "eve", "fay", "gus")
BAD_SPEC = "id: daily-report\nsteps: 12\n"  # opens (the validate check fails, no sandbox runs)


@dataclass
class Server:
    url: str
    repo: Path
    db_url: str
    tokens: dict[str, str]

    def client(self, who: str = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.repo), *args], capture_output=True, text=True, check=True
        ).stdout

    def snapshot(self) -> dict[str, Any]:
        """What a refused request must not change: refs, objects, rows of every table."""
        objects = dict(line.split(": ") for line in self.git("count-objects", "-v").splitlines())
        return {
            "refs": self.git("for-each-ref", "--format=%(refname) %(objectname)"),
            "objects": (objects["count"], objects["in-pack"]),
            "rows": row_counts(self.db_url),
        }


def row_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url.replace("+aiosqlite", ""), poolclass=sa.pool.NullPool)
    try:
        tables = sorted(sa.inspect(engine).get_table_names())
        selects = ", ".join(f'(SELECT count(*) FROM "{t}") AS "{t}"' for t in tables)
        with engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT {selects}")).one()
        return dict(zip(tables, row, strict=True))
    finally:
        engine.dispose()


async def _tokens(db_url: str) -> dict[str, str]:
    db = session.Database(db_url)
    try:
        store = SqlTokenStore(db)
        out = {}
        for name in AUTHORS:
            role = Role.admin if name == "admin" else Role.author
            out[name], _ = await store.create(name=name, role=role, now=datetime.now(UTC))
        return out
    finally:
        await db.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("limits")
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            db_url = stack.enter_context(databases.fresh_database("limits", migrate=True))
        else:
            db_url = databases.sqlite_url(databases.migrated_sqlite(home / "loom.db"))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            tokens = pool.submit(asyncio.run, _tokens(db_url)).result()
        uv = ThreadedUvicorn()
        settings = config.load_settings(
            home=home,
            database={"url": db_url},
            server={"run_scheduler": False, "port": uv.port, "public_url": uv.url, **BODY},
            engine={"poll_interval": 0.05},
            security={"signing_key": "limits-signing-key"},
            flows={"seed_from": str(EXAMPLES)},
            sandbox={"backend": "process"},
            proposals=LIMITS,
        )
        logs.configure(settings, fmt="json", level="WARNING", stream=io.StringIO())
        stack.callback(logs.reset)
        services = wiring.build_services(settings)
        stack.enter_context(uv.serving(create_app(settings, services)))
        found = Server(url=uv.url, repo=home / "flows", db_url=db_url, tokens=tokens)
        with found.client() as client:  # the flows repo is made on the first proposal request
            assert client.get("/api/v1/proposals").status_code == 200
        yield found


def refused(server: Server, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send a request that must be refused; assert it wrote nothing."""
    before = server.snapshot()
    with server.client(who) as client:
        answer = client.request(method, path, **kwargs)
    assert answer.status_code < 500, (path, answer.status_code, answer.text[:300])
    assert answer.status_code >= 400, (path, answer.status_code, answer.text[:300])
    assert server.snapshot() == before, (method, path, answer.status_code, answer.text[:300])
    return answer


def spec_text(padding: int = 0) -> str:
    text = (EXAMPLES / "daily-report" / "flow.yaml").read_text()
    return text + ("# " + "x" * padding + "\n" if padding else "")


# ------------------------------------------------------------------ finding 4: paths


@pytest.mark.parametrize(
    "files",
    [
        {"flows/daily-report/.git/config": "x"},
        {"flows/daily-report/.GIT/config": "x"},
        {"flows/daily-report/fixtures/../../../.git/config": "x"},
        {"flows/daily-report/./flow.yaml": "x"},
        # a good file first: its blob must not be written either
        {"flows/daily-report/notes.md": "a fresh blob 41f0c", "flows/x/.git/hooks/pre-commit": ""},
    ],
    ids=["dot-git", "dot-git-upper", "dot-dot", "dot", "good-then-bad"],
)
def test_a_refused_path_leaves_no_branch_and_no_object(
    server: Server, files: dict[str, str]
) -> None:
    answer = refused(
        server, "admin", "POST", "/api/v1/proposals", json={"title": "t", "files": files}
    )
    assert answer.status_code == 422, answer.text


# ------------------------------------------------------------------ finding 3: sizes


def test_a_spec_over_the_file_limit_is_refused_before_anything_is_written(server: Server) -> None:
    big = spec_text(padding=80 * KIB)
    answer = refused(
        server, "ann", "POST", "/api/v1/proposals", json={"title": "t", "specs": [big]}
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["code"] == "proposal_too_large"
    assert "spec 1 has" in answer.json()["detail"]  # sized before it is parsed


def test_a_random_fixture_file_over_the_file_limit_is_refused(server: Server) -> None:
    noise = "".join(f"{n:08x}" for n in range(10 * KIB))  # 80 KiB, like a random blob
    files = {"flows/daily-report/fixtures/huge.yaml": f"name: huge\nnoise: {noise}\n"}
    answer = refused(
        server, "ann", "POST", "/api/v1/proposals", json={"title": "t", "files": files}
    )
    assert answer.status_code == 413, answer.text


def test_files_each_under_the_limit_but_together_over_it_are_refused(server: Server) -> None:
    files = {
        f"flows/daily-report/notes-{n}.md": f"{n}" * (50 * KIB) for n in range(4)
    }  # 4 x 50 KiB > 160 KiB
    answer = refused(
        server, "ann", "POST", "/api/v1/proposals", json={"title": "t", "files": files}
    )
    assert answer.status_code == 413, answer.text
    assert "more than" in answer.json()["detail"]


def test_too_many_files_are_refused(server: Server) -> None:
    files = {f"flows/daily-report/n{n}.md": "x" for n in range(21)}
    answer = refused(
        server, "ann", "POST", "/api/v1/proposals", json={"title": "t", "files": files}
    )
    assert answer.status_code == 413, answer.text


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("flows/daily-report/fixtures/case-9.yaml", "recorded_at: yesterday-ish\n"),
        ("flows/daily-report/fixtures/case-9.yaml", "\x00\x01 random bytes: [\n"),
        ("flows/daily-report/fixtures/stubs.yaml", "stubs: [{url: x, response: {status: 9}}]"),
        ("flows/daily-report/policy.yaml", "owners: alice\n"),
    ],
    ids=["case-shape", "case-not-yaml", "stubs", "policy"],
)
def test_a_companion_file_that_does_not_parse_is_refused_before_it_is_committed(
    server: Server, path: str, text: str
) -> None:
    answer = refused(server, "ann", "POST", "/api/v1/proposals",
                     json={"title": "t", "files": {path: text}})  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_flow_file"
    assert path in answer.json()["detail"]


def test_a_revision_is_held_to_the_same_limits(server: Server) -> None:
    with server.client("bob") as client:
        opened = client.post("/api/v1/proposals", json={"title": "base", "specs": [BAD_SPEC]})
    assert opened.status_code == 201, opened.text
    path = f"/api/v1/proposals/{opened.json()['id']}/revisions"
    too_big = {"files": {"flows/daily-report/fixtures/big.yaml": "x" * (70 * KIB)}}
    assert refused(server, "bob", "POST", path, json=too_big).status_code == 413
    bad = {"files": {"flows/daily-report/.git/config": "x"}}
    assert refused(server, "bob", "POST", path, json=bad).status_code == 422
    broken = {"files": {"flows/daily-report/policy.yaml": "owners: alice\n"}}
    assert refused(server, "bob", "POST", path, json=broken).status_code == 422


def test_an_author_over_the_hourly_budget_is_refused_with_429(server: Server) -> None:
    with server.client("cat") as client:
        for n in range(LIMITS["author_revisions_per_hour"]):
            spec = BAD_SPEC + f"# {n}\n"
            answer = client.post("/api/v1/proposals", json={"title": f"p{n}", "specs": [spec]})
            assert answer.status_code == 201, answer.text
    answer = refused(server, "cat", "POST", "/api/v1/proposals",
                     json={"title": "one more", "specs": [BAD_SPEC]})  # fmt: skip
    assert answer.status_code == 429, answer.text
    assert answer.json()["code"] == "author_quota_exceeded"
    assert int(answer.headers["Retry-After"]) > 0
    with server.client("dan") as other:  # another author is not held by cat's budget
        answer = other.post("/api/v1/proposals", json={"title": "dan", "specs": [BAD_SPEC]})
        assert answer.status_code == 201, answer.text


def test_an_author_over_the_hourly_bytes_is_refused(server: Server) -> None:
    fixture = "name: big\ninputs: {}\nrecordings: []\n# " + "y" * (50 * KIB) + "\n"

    def files(prefix: str) -> dict[str, str]:  # 3 x 50 KiB: under the request's 160 KiB
        return {f"flows/daily-report/fixtures/{prefix}{m}.yaml": fixture for m in range(3)}

    with server.client("eve") as client:
        for n in range(2):
            answer = client.post("/api/v1/proposals", json={"title": "e", "files": files(f"f{n}")})
            assert answer.status_code == 201, answer.text
    answer = refused(server, "eve", "POST", "/api/v1/proposals",
                     json={"title": "e", "files": files("g")})  # fmt: skip
    assert answer.status_code == 429, answer.text  # 450 KiB in the hour > 400 KiB
    assert "MiB" in answer.json()["detail"] or "bytes" in answer.json()["detail"]


# ------------------------------------------------------------------ every body has a limit


def body_routes(server: Server) -> list[tuple[str, str]]:
    with server.client() as client:
        document = client.get("/openapi.json").json()
    out = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                out.append((method.upper(), path))
    return sorted(out)


def fill(path: str, proposal_id: str) -> str:
    known = {"flow_id": "daily-report", "proposal_id": proposal_id}
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + known.get(out[start + 1 : end], "x") + out[end + 1 :]
    return out


def oversized(limit: int) -> bytes:
    """A JSON object a little over ``limit`` that most routes would otherwise accept."""
    pad = "z" * (limit + KIB)
    return (
        '{"title": "t", "body": "' + pad + '", "comment": "c", "reason": "r", "inputs": {}}'
    ).encode()


def test_every_route_with_a_body_refuses_an_oversized_one_and_writes_nothing(
    server: Server,
) -> None:
    routes = body_routes(server)
    assert ("POST", "/api/v1/proposals") in routes
    assert len(routes) > 10, routes
    with server.client("gus") as client:
        opened = client.post("/api/v1/proposals", json={"title": "target", "specs": [BAD_SPEC]})
    assert opened.status_code == 201, opened.text
    body = oversized(BODY["max_proposal_body_bytes"])
    headers = {"Content-Type": "application/json"}

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * KIB):
            yield body[start : start + 64 * KIB]

    for method, template in routes:
        path = fill(template, opened.json()["id"])
        for kind, content in (("declared", body), ("streamed", chunks())):
            answer = refused(server, "admin", method, path, content=content, headers=headers)
            assert answer.status_code in (413, 422), (kind, method, path, answer.text[:300])
            if answer.status_code == 413:
                assert answer.json()["code"] in ("request_too_large", "proposal_too_large")


def test_a_body_over_the_general_limit_is_refused_where_proposals_may_be_larger(
    server: Server,
) -> None:
    """128 KiB passes on a proposal route (its own limits then apply) but not on a comment."""
    body = oversized(BODY["max_body_bytes"])
    answer = refused(server, "admin", "POST", "/api/v1/proposals/nope/comments", content=body,
                     headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 413
    assert answer.json()["code"] == "request_too_large"
    answer = refused(server, "admin", "POST", "/api/v1/proposals", content=body,
                     headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 422, answer.text  # read, then refused: it names no flow


def test_the_web_editor_save_is_held_to_the_body_and_proposal_limits(server: Server) -> None:
    too_long = oversized(BODY["max_proposal_body_bytes"])
    answer = refused(server, "admin", "POST", "/editor/save", content=too_long,
                     headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 413, answer.text


# ------------------------------------------------------------------ retention of branches


def test_a_closed_proposals_branch_is_pruned_and_its_record_kept(server: Server) -> None:
    with server.client("fay") as client:
        opened = client.post("/api/v1/proposals", json={"title": "old", "specs": [BAD_SPEC]})
        assert opened.status_code == 201, opened.text
        proposal_id = opened.json()["id"]
        assert client.post(f"/api/v1/proposals/{proposal_id}/close", json={}).status_code == 200
        assert f"proposals/{proposal_id}" in server.git("branch", "--list", "proposals/*")
        time.sleep(1.0)  # past the retention (half a second)
        again = client.post("/api/v1/proposals", json={"title": "new", "specs": [BAD_SPEC]})
        assert again.status_code == 201, again.text  # a later proposal prunes the old branch
        assert f"proposals/{proposal_id}" not in server.git("branch", "--list", "proposals/*")
        assert again.json()["id"] in server.git("branch", "--list", "proposals/*")
        record = client.get(f"/api/v1/proposals/{proposal_id}").json()
        assert record["status"] == "closed"
        assert record["title"] == "old"
        assert record["branch_pruned_at"] is not None
    with httpx.Client(base_url=server.url, timeout=60) as browser:  # the page says so too
        page = browser.post(
            "/login",
            data={"token": server.tokens["fay"], "next": f"/proposals/{proposal_id}"},
            headers={"Origin": server.url},
            follow_redirects=True,
        )
        assert page.status_code == 200, page.text[:300]
        assert "branch pruned" in page.text


# ------------------------------------------------------------------ the shipped defaults


def test_defaults_bound_bodies_and_proposals() -> None:
    settings = config.load_settings()
    assert settings.server.max_body_bytes == 4 * 1024 * KIB
    assert settings.server.max_proposal_body_bytes == 24 * 1024 * KIB
    limits = settings.proposals
    assert limits.max_file_bytes == 2 * 1024 * KIB  # the largest spec PUT /flows reads
    assert limits.max_bytes == 8 * 1024 * KIB
    assert limits.author_bytes_per_hour == 32 * 1024 * KIB
    assert limits.branch_retention_days == 30


def test_a_limit_set_to_null_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_PROPOSALS", '{"max_bytes": null}')  # as docs/security.md says
    limits = config.load_settings().proposals
    assert limits.max_bytes is None
    assert limits.max_file_bytes == 2 * 1024 * KIB

"""Secrets, raw and filtered, appear nowhere a real ``loom server`` keeps or shows anything.

The ``secretive`` flow of ``tests.support.hostile`` reads two secrets with mixed-case names
(``ShopKey``, ``api_Token``): raw and filtered (``| upper``, ``| lower``, ``| reverse``,
``| join``, slicing, ``[::-1]``) in an http step's query and headers, in a transform's output and
in a POST body the backend echoes back. It runs once successfully and once failing (the backend
answers 404 to the query that carries the secret); a proposal that adds a step filtering a
secret is opened, checked (replayed in the sandbox) and revised with the exported fixture; then
every table (the SQLite file, or a ``pg_dump``), the flows repo's history
(``git log -p --all``), the server's log and every API answer about those runs and the proposal
are searched for each secret in each form. Nothing is found. (Masking by taint is
``linkloom/flows/taint.py``; ``tests/e2e/test_truthful_diff.py`` proves the diffs.)

``loom``'s ``b64encode`` filter does not exist (``test_hostile_specs.py`` checks it is refused),
so the base64 forms are searched for all the same.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import hostile
from tests.support.hostile import KINDS, SECRETS, HostileServer, dump, secret_flow

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API = "/api/v1"


def forms(secret: str) -> dict[str, str]:
    """The secret as the flows and filters of this suite could produce it."""
    return {
        "raw": secret,
        "upper": secret.upper(),
        "lower": secret.lower(),
        "title": secret.title(),
        "reverse": secret[::-1],
        "join -": "-".join(secret),
        "join .": ".".join(secret),
        "slice 2:9": secret[2:9],
        "base64": base64.b64encode(secret.encode()).decode(),
        "urlsafe base64": base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
    }


FORMS = {
    f"{name} {form}": text for name, value in SECRETS.items() for form, text in forms(value).items()
}


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> HostileServer:
    return hostile.shared(request)


@pytest.fixture(scope="module")
def answers(server: HostileServer) -> Iterator[list[str]]:
    """Runs and a proposal that use the secrets; every API answer about them (as text)."""
    author, viewer = server.client("author"), server.client("viewer")
    runs = []
    for region in ("eu", "nowhere"):  # the second one fails: the backend answers 404
        started = author.post(f"{API}/flows/secretive/runs", json={"inputs": {"region": region}})
        assert started.status_code == 201, started.text
        runs.append(server.wait_run(started.json()["id"]))
    assert [r["status"] for r in runs] == ["SUCCEEDED", "FAILED"]
    sent = server.backend.sent("GET", "/rates")[-1]  # the filtered forms were really made
    assert sent.query["rkey"] == SECRETS["ShopKey"][::-1]
    headers = {name.lower(): value for name, value in sent.headers.items()}
    assert headers["authorization"] == "Bearer " + SECRETS["api_Token"].upper()
    assert headers["x-joined"] == "-".join(SECRETS["api_Token"])
    got: list[Any] = []
    for run in runs:
        rid = run["id"]
        for view in ("", "/steps", "/attempts", "/events", "/logs", "/exchanges", "/fixture"):
            got.append(viewer.get(f"{API}/runs/{rid}{view}"))
    fixture = viewer.get(f"{API}/runs/{runs[0]['id']}/fixture").json()

    changed = secret_flow(backend=server.backend.url)
    changed["steps"].append(
        {
            "id": "leak",
            "type": "transform",
            "depends_on": ["mix"],
            "template": {"again": "{{ secrets.api_Token | reverse | upper }}"},
        }
    )
    opened = author.post(
        f"{API}/proposals",
        json={"title": "one more", "files": {"flows/secretive/flow.yaml": dump(changed)}},
    )
    assert opened.status_code == 201, opened.text
    pid = opened.json()["id"]
    revised = author.post(
        f"{API}/proposals/{pid}/revisions",
        json={"files": {fixture["path"]: fixture["yaml"]}, "message": "a case from production"},
    )
    assert revised.status_code == 200, revised.text
    got += [opened, revised]
    for view in ("", "/checks", "/plan", "/diff", "/report"):
        got.append(viewer.get(f"{API}/proposals/{pid}{view}"))
    for path in ("/runs", "/flows/secretive", "/flows/secretive/versions", "/dead-letters",
                 "/flows/secretive/history", "/proposals"):  # fmt: skip
        got.append(viewer.get(API + path))
    got.append(server.client("admin").get(f"{API}/audit", params={"limit": 1000}))
    assert [(r.url.path, r.text[:200]) for r in got if not r.is_success] == []
    yield [r.text for r in got]
    author.post(f"{API}/proposals/{pid}/close")


def found_in(blob: bytes | str) -> list[str]:
    text = blob if isinstance(blob, str) else blob.decode("utf-8", errors="replace")
    return sorted(name for name, form in FORMS.items() if form in text)


def test_no_api_answer_shows_a_secret(answers: list[str]) -> None:
    assert len(answers) > 20
    assert found_in("\n".join(answers)) == []
    assert "***" in "\n".join(answers)  # the secrets were there, masked


def test_no_table_holds_a_secret(server: HostileServer, answers: list[str]) -> None:
    if server.kind == "sqlite":
        blob = b"".join(p.read_bytes() for p in server.home.glob("loom.db*"))
    else:
        url = server.db_url.replace("postgresql+psycopg://", "postgresql://")
        blob = subprocess.run(
            ["pg_dump", "--no-owner", "--data-only", url],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
    assert b"secretive" in blob  # the runs are there
    assert found_in(blob) == []


def test_the_flows_repo_history_holds_no_secret(server: HostileServer, answers: list[str]) -> None:
    history = server.git("log", "-p", "--all")
    assert "secrets.ShopKey" in history  # the templates are there, never the values
    assert "fixtures/" in history  # and the fixture exported from a production run
    assert found_in(history) == []


def test_the_server_log_holds_no_secret(server: HostileServer, answers: list[str]) -> None:
    log = server.log()
    assert "run_finished" in log
    assert found_in(log) == []

"""Hostile specs and templates, on a real ``loom server`` (SQLite and PostgreSQL), through
``loom validate``, ``PUT /flows`` and proposals: every one is refused (a 4xx naming the problem)
or bounded (a run that uses it ends within seconds, its step failed or its output harmless), no
answer is a 5xx, nothing leaks a secret or Python's internals, and the server stays up.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import hostile
from tests.support.hostile import KINDS, SECRETS, HostileServer, dump

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API = "/api/v1"
WITHIN = 20.0  # seconds any one of these may take, answer or run, on a loaded machine

# Whole documents: refused by PUT /flows and by the proposal's validation.
DOCUMENTS: dict[str, str] = {
    "yaml bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "id: bomb\nsteps: *i\n",
    "deep nesting (json)": '{"id": "deep", "steps": [], "x": '
    + "[" * 100_000
    + "]" * 100_000
    + "}",
    "deep nesting (yaml)": "id: deep\nsteps: []\nx: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "python object tag": "id: tag\nsteps: !!python/object/apply:os.system ['touch pwned']\n",
    "python name tag": "id: tag\nsteps: []\nx: !!python/name:os.system\n",
    "recursive alias": "id: rec\nsteps: []\nx: &x [*x]\n",
    "merge key loop": "id: merge\nsteps: []\nx: &x {<<: *x}\n",
    "unknown step type": dump(
        {"id": "unknown", "steps": [{"id": "s", "type": "python", "code": "import os"}]}
    ),
    "dunder step type": dump({"id": "dunder", "steps": [{"id": "s", "type": "__import__"}]}),
    "shell step (off)": dump(
        {"id": "shell", "steps": [{"id": "s", "type": "shell", "command": "touch pwned"}]}
    ),
    "dependency cycle": dump(
        {
            "id": "cycle",
            "steps": [
                {"id": "a", "type": "transform", "depends_on": ["b"], "template": {}},
                {"id": "b", "type": "transform", "depends_on": ["a"], "template": {}},
            ],
        }
    ),
    "100k steps": "id: many\nsteps:\n"
    + "".join(f"  - {{id: s{i}, type: transform, template: {{}}}}\n" for i in range(100_000)),
    "huge template": dump(
        {
            "id": "huge",
            "steps": [{"id": "s", "type": "transform", "template": "{{ 1 }}" * 300_000}],
        }
    ),
    "not a mapping": "- just\n- a\n- list\n",
    "binary garbage": "\x00\x01\x02\xff\xfe" * 1000,
}

# Templates that may pass validation: a run must end quickly, failed or harmless.
TEMPLATES: dict[str, str] = {
    "mro walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals via cycler": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "globals via self": "{{ self.__init__.__globals__ }}",
    "lipsum globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "config": "{{ config.items() }}",
    "request": "{{ request.environ }}",
    "attr filter": "{{ ''|attr('__class__')|attr('__mro__') }}",
    "format string": "{{ '{0.__class__.__mro__}'.format('') }}",
    "secrets class": "{{ secrets.__class__.__init__.__globals__ }}",
    "secrets internals": "{{ secrets._values }}",
    "secrets dict": "{{ secrets.__dict__ }}",
    "secrets values": "{{ secrets.values() | list }}",
    "secrets items": "{% for k, v in secrets.items() %}{{ k }}={{ v | reverse }};{% endfor %}",
    "secrets getattr": "{{ secrets|attr('_values') }}",
    "run globals": "{{ run.__class__.__init__.__globals__ }}",
    "range 10**9": "{{ range(10**9) | list | length }}",
    "nested loops": "{% for i in range(10**5) %}{% for j in range(10**5) %}x{% endfor %}"
    "{% endfor %}",
    "huge string": "{{ 'x' * 10**10 }}",
    "huge power": "{{ 9 ** (9 ** 9) }}",
    "huge join": "{{ (['x' * 10**6] * 10**4) | join }}",
    "recursive macro": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "recursive loop": "{% for x in [[[1]]] recursive %}{{ loop([x]) }}{% endfor %}",
    "self-containing list": "{% set x = [] %}{{ x.append(x) }}{{ x }}",
    "b64 filter": "{{ secrets.ShopKey | b64encode }}",
}
# Texts a harmless output must not contain.
INTERNALS = ("__globals__", "<class", "<built-in", "<function", "<module", "uid=", "os.")


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> HostileServer:
    return hostile.shared(request)


def timed(call: Any) -> Any:
    started = time.monotonic()
    response = call()
    assert time.monotonic() - started < WITHIN, "took too long"
    return response


def refused(response: Any) -> bool:
    """A clear refusal: a 4xx other than 401/403 with a problem body."""
    if not 400 <= response.status_code < 500 or response.status_code in (401, 403):
        return False
    if response.headers.get("content-type", "").endswith("json"):
        body = response.json()
        return bool(body.get("detail") or body.get("problems") or body.get("title"))
    return True


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_hostile_documents_are_refused_by_put_flows(server: HostileServer, name: str) -> None:
    response = timed(lambda: server.client("admin").put(
        f"{API}/flows/hostile", json={"spec": DOCUMENTS[name]}))  # fmt: skip
    assert refused(response), (response.status_code, response.text[:300])
    assert server.client("viewer").get(f"{API}/flows/hostile").status_code == 404
    assert server.alive()


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_hostile_templates_are_refused_or_bounded(server: HostileServer, name: str) -> None:
    flow_id = "tpl-" + "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    spec = {
        "id": flow_id,
        "steps": [
            {"id": "evil", "type": "transform", "template": {"out": TEMPLATES[name]}},
            {"id": "sibling", "type": "transform", "template": {"ok": "{{ 1 + 1 }}"}},
        ],
    }
    admin = server.client("admin")
    applied = timed(lambda: admin.put(f"{API}/flows/{flow_id}", json={"spec": spec}))
    if applied.status_code != 200:
        assert refused(applied), (applied.status_code, applied.text[:300])
        return
    started = admin.post(f"{API}/flows/{flow_id}/runs", json={"inputs": {}})
    assert started.status_code == 201, started.text
    run = server.wait_run(started.json()["id"], within=WITHIN)
    steps = {s["step_id"]: s for s in admin.get(f"{API}/runs/{run['id']}/steps").json()}
    assert steps["sibling"]["status"] == "SUCCEEDED"  # the worker went on
    evil = steps["evil"]
    if evil["status"] == "FAILED":
        assert evil["error"], evil
    else:
        assert evil["status"] == "SUCCEEDED", evil
    text = str(evil)
    for found in (*INTERNALS, *SECRETS.values()):
        assert found not in text, (found, text[:300])
    assert server.alive()


def test_hostile_proposals_are_refused_or_fail_their_checks(server: HostileServer) -> None:
    author = server.client("author")
    opened = []
    for name in ("yaml bomb", "deep nesting (json)", "python object tag", "100k steps"):
        body = {"title": name, "files": {"flows/hostile/flow.yaml": DOCUMENTS[name]}}
        response = timed(lambda body=body: author.post(f"{API}/proposals", json=body))
        if response.status_code == 201:
            opened.append(response.json())
            checks = {c["name"]: c["status"] for c in response.json()["checks"]}
            assert checks.get("validate") == "failed", (name, checks)
        else:
            assert refused(response), (name, response.status_code, response.text[:300])
    for p in opened:
        assert author.post(f"{API}/proposals/{p['id']}/close").status_code == 200
    evil = {
        "id": "plain",
        "steps": [{"id": "evil", "type": "transform", "template": {"x": TEMPLATES["mro walk"]}}],
    }
    response = timed(lambda: author.post(
        f"{API}/proposals", json={"title": "escape", "specs": [dump(evil)]}))  # fmt: skip
    if response.status_code == 201:
        assert "<class" not in response.text
        assert author.post(f"{API}/proposals/{response.json()['id']}/close").status_code == 200
    else:
        assert refused(response), response.text[:300]
    assert server.alive()


def test_loom_validate_refuses_every_hostile_document(tmp_path: Path) -> None:
    local = {n: t for n, t in DOCUMENTS.items() if n != "shell step (off)"}  # a server setting
    for name, text in local.items():
        folder = tmp_path / "flows" / ("".join(c if c.isalnum() else "-" for c in name))
        folder.mkdir(parents=True)
        (folder / "flow.yaml").write_text(text, errors="surrogateescape")
    done = subprocess.run(
        [sys.executable, "-m", "linkloom", "validate", str(tmp_path / "flows")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert f"{len(local)} file(s) checked" in output
    for folder in (tmp_path / "flows").iterdir():
        assert f"{folder.name}/flow.yaml:" in output, folder.name  # each names its error
    assert "Traceback" not in output
    assert not (tmp_path / "pwned").exists()

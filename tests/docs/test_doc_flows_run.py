"""The documented flows run, and the documented CLI sessions work, on a real server.

A real wired server (``tests/support/loom_server.py``: SQLite file, the API app on a local
port, a worker) and the example backend (``examples/backend``) on a free port; the hosts the
docs use (``127.0.0.1:8081``, ``user-backend:8080``, ``crm.example.com``, ``erp.example.com``,
``api.example.com``) are sent to the backend by the engine's HTTP transport, so the snippets run
verbatim.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from examples.backend import serve
from linkloom.engine.records import RunFilter
from linkloom.flows.loading import load_flow
from linkloom.flows.spec import FlowSpec
from tests.docs import snippets
from tests.docs.snippets import Snippet
from tests.support.loom_server import SIGNING_KEY, LoomServer

RUNNABLE = [s for s in snippets.of(snippets.SPEC_LANGS) if snippets.spec_role(s) == "spec"]
SESSIONS = [s for s in snippets.of(snippets.SHELL_LANGS) if s.tagged("run")]
EXAMPLE_FLOWS = sorted((snippets.ROOT / "examples" / "flows").glob("*/flow.yaml"))
RUN_ID = "RUN_ID"  # in a ``run`` block: the id of the newest run


def _hosts(url: str) -> dict[str, str]:
    return {
        "127.0.0.1:8081": url,
        "user-backend:8080": url,
        "crm.example.com": f"{url}/crm",
        "erp.example.com": f"{url}/erp",
        "api.example.com": url,
    }


SAMPLES: dict[str, Any] = {
    "string": "example",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "object": {},
    "array": [],
}


def sample_inputs(spec: FlowSpec) -> dict[str, Any]:
    """Defaults apply; a required input without one gets its first enum value or a sample of
    its type (so a snippet needs no hidden inputs)."""
    return {
        name: (declared.enum or [SAMPLES[declared.type]])[0]
        for name, declared in spec.inputs.items()
        if declared.required and declared.default is None
    }


async def _run_one(server: LoomServer, snippet: Snippet) -> str | None:
    """Apply the snippet's spec and run it; a failure's description."""
    name = "snippet.json" if snippet.lang == "json" else "snippet.yaml"
    spec = load_flow(snippet.text, filename=name)
    await server.services.runs.apply_flow(spec)
    run = await server.services.runs.trigger(spec.id, inputs=sample_inputs(spec))
    try:
        done = await server.wait(run.id, within=120)  # a ceiling for a loaded machine
    except TimeoutError:
        steps = await server.steps(run.id)
        states = {k: str(s.status) for k, s in steps.items()}
        return f"{snippet.where}: flow {spec.id!r} did not end within 120 s; steps: {states}"
    if done.status == "SUCCEEDED":
        return None
    steps = await server.steps(run.id)
    failed = {k: s.error for k, s in steps.items() if s.error}
    return f"{snippet.where}: flow {spec.id!r} ended {done.status}: {done.error}; steps: {failed}"


async def test_every_documented_flow_runs_against_the_example_backend(tmp_path: Path) -> None:
    assert len(RUNNABLE) >= 10, "the extraction found too few runnable flows"
    failures = []
    with serve(signing_key=SIGNING_KEY) as backend:
        hosts = _hosts(backend.url)
        async with LoomServer(tmp_path, hosts=hosts, engine={"shell_enabled": True}) as server:
            for snippet in RUNNABLE:
                failure = await _run_one(server, snippet)
                if failure:
                    failures.append(failure)
        calls = backend.state.calls
    assert not failures, "documented flows that do not run:\n" + "\n".join(failures)
    # The flows reached the backend's task endpoints and its plain JSON API.
    reached = {"fetch-data", "charge", "slow-report", "crm-orders", "erp-import", "users"}
    assert {name for name in reached if calls[name]} == reached


async def _loom(server: LoomServer, args: list[str], home: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "LOOM_SERVER_URL": server.url,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "COLUMNS": "200",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linkloom",
        *args,
        env=env,
        cwd=snippets.ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_documented_cli_sessions_run_against_a_real_server(tmp_path: Path) -> None:
    """Blocks tagged ``run`` (the README's quick start): every ``loom`` command exits 0 against
    a server holding the example flows, as after ``./scripts/start``."""
    assert SESSIONS, "no shell block is tagged 'run'"
    failures = []
    with serve(signing_key=SIGNING_KEY) as backend:
        async with LoomServer(tmp_path / "server", hosts=_hosts(backend.url)) as server:
            for path in EXAMPLE_FLOWS:
                await server.services.runs.apply_flow(load_flow(path.read_bytes()))
            for snippet in SESSIONS:
                for command in snippets.loom_commands(snippet):
                    args = list(command.args)
                    if RUN_ID in args:
                        page = await server.services.runs.list_runs(RunFilter(), limit=1)
                        args = [page.items[0].id if a == RUN_ID else a for a in args]
                    code, out = await _loom(server, args, tmp_path)
                    if code != 0:
                        failures.append(f"{command.where}: `{command.text}` exited {code}:\n{out}")
    assert not failures, "\n".join(failures)

"""The remote backend against a real ``loom sandbox serve`` process in a network namespace of
its own (``unshare -rn``), reached over a Unix socket: bundles run there with no network, only
bundles signed with the shared key are accepted (once), and a proposal's checks on the fully
wired API over PostgreSQL use it when ``LOOM_SANDBOX__BACKEND=remote``."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sandbox_helpers import real_engine_bundle

from linkloom import signing
from linkloom.access import Role
from linkloom.sandbox.errors import SandboxUnavailable
from linkloom.sandbox.process import namespaces_available
from linkloom.sandbox.remote import RemoteRunner, client_for
from linkloom.sandbox.runner import SandboxResult
from tests.support import databases
from tests.support.real import require

KEY = "remote-sandbox-test-key-of-at-least-32-bytes"
LOOM = str(Path(sys.executable).with_name("loom"))


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    require(namespaces_available("-rn"), "unshare -rn is not permitted here (user namespaces)")
    sock = tmp_path / "sandbox.sock"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LOOM_SANDBOX__REMOTE_KEY": KEY,
        "LOOM_SANDBOX__WALL_CLOCK_SECONDS": "60",
        "LOOM_LOG__FORMAT": "json",
    }
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["unshare", "-rn", LOOM, "sandbox", "serve", "--unix", str(sock)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if sock.exists():
                with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as client:
                    try:
                        if client.get("http://sandbox/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"loom sandbox serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield Service(url=f"unix://{sock}", process=process, log=log)
    finally:
        process.terminate()
        process.wait(10)


class Listener:
    """A TCP server on 127.0.0.1 in the test's own network namespace, counting connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def connect_step(port: int) -> dict[str, Any]:
    code = (
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "print('connected')\n"
    )
    return {
        "id": "net",
        "type": "shell",
        "depends_on": ["shape"],
        "command": [sys.executable, "-c", code],
    }


async def test_a_bundle_runs_in_the_service_with_no_network(service: Service) -> None:
    ours = os.readlink("/proc/self/ns/net")
    theirs = os.readlink(f"/proc/{service.process.pid}/ns/net")
    assert ours != theirs, "the service must run in a network namespace of its own"
    listener = Listener()
    try:
        bundle = real_engine_bundle(connect_step(listener.port), shell=True)
        result = await RemoteRunner(url=service.url, key=KEY).run(bundle)
    finally:
        listener.close()
    assert result.backend == "remote"
    assert result.error is None, result.error
    (case,) = result.cases
    assert case.run_status == "FAILED"
    assert case.steps["fetch"].status == "SUCCEEDED"
    assert case.steps["shape"].output == {"count": 3}
    assert case.steps["net"].status == "FAILED"
    assert listener.accepted == 0, "the sandbox reached a port on the server's network"
    assert f"service: {service.url} (process backend)" in result.isolation


async def test_the_service_accepts_only_bundles_signed_with_its_key_once(
    service: Service,
) -> None:
    body = real_engine_bundle().to_json().encode()
    async with client_for(service.url, timeout=60) as client:
        unsigned = await client.post("/v1/bundles", content=body)
        assert unsigned.status_code == 401
        forged = await client.post(
            "/v1/bundles", content=body, headers=signing.sign("another key", body)
        )
        assert forged.status_code == 401
        headers = signing.sign(KEY, body)
        first = await client.post("/v1/bundles", content=body, headers=headers)
        assert first.status_code == 200, first.text
        (case,) = SandboxResult.from_dict(first.json()).cases
        assert case.run_status == "SUCCEEDED"
        replayed = await client.post("/v1/bundles", content=body, headers=headers)
        assert replayed.status_code == 409
        assert replayed.json()["code"] == "bundle_replayed"
        sig = headers[signing.SIGNATURE_HEADER]
        for respelled in (f"{sig},x", f"{sig},{sig}", f"v0=abc,{sig}"):
            again = {**headers, signing.SIGNATURE_HEADER: respelled}
            answer = await client.post("/v1/bundles", content=body, headers=again)
            assert answer.status_code in (401, 409), (respelled, answer.status_code)
        garbage = b'{"not": "a bundle"}'
        invalid = await client.post(
            "/v1/bundles", content=garbage, headers=signing.sign(KEY, garbage)
        )
        assert invalid.status_code == 422
        assert invalid.json()["code"] == "invalid_bundle"
    with pytest.raises(SandboxUnavailable, match="LOOM_SANDBOX__REMOTE_KEY differs"):
        await RemoteRunner(url=service.url, key="another key").run(real_engine_bundle())


async def test_an_unreachable_service_is_unavailable(tmp_path: Path) -> None:
    runner = RemoteRunner(url=f"unix://{tmp_path / 'nobody.sock'}", key=KEY)
    with pytest.raises(SandboxUnavailable, match="is `loom sandbox serve` running"):
        await runner.run(real_engine_bundle())
    with pytest.raises(SandboxUnavailable, match="LOOM_SANDBOX__REMOTE_URL"):
        RemoteRunner(url="", key=KEY)


# ---- a proposal's checks through the remote backend, on PostgreSQL ---------------------------
FLOW: dict[str, Any] = {
    "id": "report",
    "inputs": {"to": {"type": "string", "default": "ops"}},
    "steps": [
        {"id": "fetch", "type": "http", "url": "http://user-backend:8080/fetch"},
        {
            "id": "shape",
            "type": "transform",
            "depends_on": ["fetch"],
            "template": {"where": "{{ steps.fetch.output.path }}", "to": "{{ inputs.to }}"},
        },
    ],
}


@pytest.fixture
async def pg_api(tmp_path: Path, service: Service) -> AsyncIterator[Any]:
    from tests.acceptance.api.api_harness import start_api

    seed = tmp_path / "seed" / "report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(yaml.safe_dump(FLOW, sort_keys=False))
    with databases.fresh_database("remote_sandbox", migrate=True) as url:
        running, lifespan = await start_api(
            url,
            tmp_path,
            flows={"seed_from": str(tmp_path / "seed")},
            sandbox={"backend": "remote", "remote_url": service.url, "remote_key": KEY},
        )
        yield running
        await lifespan.__aexit__(None, None, None)


async def test_proposal_checks_run_in_the_remote_sandbox_on_postgresql(
    pg_api: Any, service: Service
) -> None:
    admin, reviewer = pg_api.client(Role.admin), pg_api.client(Role.reviewer)
    try:
        assert (await admin.post("/api/v1/repo/sync")).status_code == 200
        run = (await admin.post("/api/v1/flows/report/runs", json={"inputs": {}})).json()
        assert (await pg_api.wait_run(run["id"])).status.value == "SUCCEEDED"
        flow = copy.deepcopy(FLOW)
        flow["steps"][1]["template"]["to"] = "team {{ inputs.to }}"
        opened = await reviewer.post(
            "/api/v1/proposals",
            json={"title": "Team recipients", "specs": [yaml.safe_dump(flow, sort_keys=False)]},
        )
        assert opened.status_code == 201, opened.text
        proposal = opened.json()
        checks = {c["name"]: c for c in proposal["checks"]}
        assert checks["sandbox"]["status"] == "passed", checks["sandbox"]
        assert "remote" in checks["sandbox"]["summary"], checks["sandbox"]["summary"]
        diff = (await reviewer.get(f"/api/v1/proposals/{proposal['id']}/diff")).json()
        (case,) = diff["flows"]["report"]["cases"]
        assert {s["step_id"]: s["change"] for s in case["steps"]} == {
            "fetch": "unchanged",
            "shape": "changed",
        }
    finally:
        await admin.aclose()
        await reviewer.aclose()
    assert "sandbox_bundle_run" in service.log.read_text()

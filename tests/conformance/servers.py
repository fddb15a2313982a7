"""A real ``loom server`` process for the conformance suite, and the API calls tests make.

The server runs as ``python -m linkloom server`` with authentication on: its first start
prints an admin token, which the tests use, and an ``author`` token is made through the API for
pull workers. Its ``public_url`` points at the proxy, so callbacks pass through it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class ServerProcess:
    def __init__(self, *, home: Path, db_url: str, port: int, public_url: str, key: str) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = home / "server.log"
        skip = ("LOOM_", "PYTHONDONTWRITEBYTECODE")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(skip)},
            "PYTHONPATH": str(REPO),
            "XDG_CONFIG_HOME": str(home / "config"),
            "LOOM_HOME": str(home),
            "LOOM_DATABASE__URL": db_url,
            "LOOM_SERVER__HOST": "127.0.0.1",
            "LOOM_SERVER__PORT": str(port),
            "LOOM_SERVER__PUBLIC_URL": public_url,
            "LOOM_SERVER__RUN_SCHEDULER": "false",
            "LOOM_SECURITY__SIGNING_KEY": key,
            "LOOM_ENGINE__POLL_INTERVAL": "0.05",
            # async deadlines are checked every second; a shorter lease, renewed late on a busy
            # machine, re-delivers attempts (correct, at least once, but noise for the cases)
            "LOOM_ENGINE__LEASE_SECONDS": "3",
            "LOOM_PULL__LEASE_SECONDS": "3",  # workers heartbeat every second
            "LOOM_PULL__LOST_AFTER": "6",
            "LOOM_PULL__MAX_WAIT": "2",
            "LOOM_LOG__LEVEL": "WARNING",
            "LOOM_LOG__FORMAT": "json",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_token = ""

    def start(self, within: float = 120) -> None:
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "linkloom", "server"],
            env=self.env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"loom server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"loom server not up:\n{self.log_path.read_text()[-3000:]}")
        printed = re.search(r"^\s+(loom_\S+)$", self.log_path.read_text(), re.MULTILINE)
        assert printed, f"no admin token printed:\n{self.log_path.read_text()[-3000:]}"
        self.admin_token = printed.group(1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Loom:
    """The API of one running server, as the tests use it."""

    name: str  # "sqlite" | "postgres": also its name at the proxy
    url: str
    api: httpx.Client  # admin
    worker_token: str  # author

    def apply(self, spec: dict[str, Any]) -> None:
        answer = self.api.put(f"/flows/{spec['id']}", json={"spec": spec})
        assert answer.status_code in (200, 201), answer.text

    def trigger(self, flow_id: str, inputs: dict[str, Any] | None = None) -> str:
        answer = self.api.post(f"/flows/{flow_id}/runs", json={"inputs": inputs or {}})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def wait(self, run_id: str, within: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            run = self.api.get(f"/runs/{run_id}").json()
            if run["status"] in FINAL:
                return dict(run)
            time.sleep(0.3)  # a dozen cases poll at once: keep the server's pool for the engine
        raise AssertionError(f"run {run_id} did not finish in {within}s: {run}")

    def run(self, spec: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        self.apply(spec)
        return self.wait(self.trigger(spec["id"], inputs))

    def steps(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The run's step runs by step id (fan-out items as ``id[index]``)."""
        out = {}
        for step in run["steps"]:
            index = step.get("index")
            out[step["step_id"] if index is None else f"{step['step_id']}[{index}]"] = step
        return out

    def attempts(self, run_id: str, step_id: str) -> list[dict[str, Any]]:
        answer = self.api.get(f"/runs/{run_id}/attempts")
        assert answer.status_code == 200, answer.text
        data = answer.json()
        items = data["items"] if isinstance(data, dict) else data
        return [a for a in items if a["step_id"] == step_id]

    def logs(self, run_id: str) -> list[str]:
        data = self.api.get(f"/runs/{run_id}/logs").json()
        items = data["items"] if isinstance(data, dict) else data
        return [str(line.get("message")) for line in items]

    def workers(self) -> dict[str, dict[str, Any]]:
        data = self.api.get("/workers", params={"include_stopped": True}).json()
        return {w["id"]: w for w in data["items"]}


def make_loom(name: str, server: ServerProcess) -> Loom:
    api = httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=30,
    )
    made = api.post("/tokens", json={"name": "conformance-workers", "role": "author"})
    assert made.status_code == 201, made.text
    return Loom(name=name, url=server.url, api=api, worker_token=made.json()["secret"])

"""The global SSE feed on a real server: run status changes arrive as they happen."""

from __future__ import annotations

import json
import threading
import time

import httpx
from cli_harness import CliServer, invoke

from linkloom.access import Role
from tests.acceptance.api.api_harness import flow_spec


def test_global_stream_reports_status_changes(cli_server: CliServer) -> None:
    headers = {"Authorization": f"Bearer {cli_server.tokens[Role.viewer]}"}
    admin = {"Authorization": f"Bearer {cli_server.tokens[Role.admin]}"}
    seen: list[dict[str, str]] = []
    ready = threading.Event()
    with httpx.Client(base_url=cli_server.url, timeout=10) as client:
        client.put("/api/v1/flows/streamed", json={"spec": flow_spec("streamed")}, headers=admin)

        def read() -> None:
            with client.stream("GET", "/api/v1/stream", headers=headers) as response:
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                        if kind == "ready":
                            ready.set()
                    elif line.startswith("data:") and kind == "run":
                        seen.append(json.loads(line[5:]))
                        if seen[-1]["status"] == "SUCCEEDED":
                            return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert ready.wait(10)
        run = client.post(
            "/api/v1/flows/streamed/runs", json={"inputs": {"to": "x"}}, headers=admin
        ).json()
        reader.join(15)
    assert not reader.is_alive()
    mine = [event for event in seen if event["run_id"] == run["id"]]
    assert mine[-1]["status"] == "SUCCEEDED"
    assert mine[0]["flow_id"] == "streamed"


def test_no_token_is_refused_with_a_hint(cli_server: CliServer) -> None:
    started = time.monotonic()
    response = httpx.get(f"{cli_server.url}/api/v1/runs")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]
    assert time.monotonic() - started < 5
    assert invoke("--help").exit_code == 0

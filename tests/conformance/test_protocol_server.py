"""The server's side of docs/protocol.md, checked against a real ``loom server`` (SQLite and
PostgreSQL) with a plain recording backend and raw HTTP calls: what it sends, how it signs, and
how its callback and pull-worker endpoints answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from linkloom import signing
from tests.conformance.conftest import KEY, wait_until
from tests.conformance.proxy import signature_ok
from tests.conformance.servers import Loom
from tests.support.servers import ThreadedAiohttpServer

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
ENVELOPE_KEYS = {
    "run_id", "flow_id", "flow_version", "step_id", "attempt", "idempotency_key", "inputs",
    "upstream", "item", "index", "callback",
}  # fmt: skip


class Recorder(ThreadedAiohttpServer):
    """Answers every request SUCCESS (``/async``: 202) and keeps what arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((request.method, request.path_qs, headers, body))
        if request.path == "/async":
            return web.json_response({"status": "ACCEPTED"}, status=202)
        return web.json_response({"status": "SUCCESS", "output": {"path": request.path}})


@pytest.fixture(scope="module")
def recorder() -> Any:
    with Recorder() as running:
        yield running


def _signed(body: bytes, *, key: str = KEY, shift: int = 0) -> dict[str, str]:
    ts = str(int(time.time()) + shift)
    mac = hmac.new(key.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Loom-Timestamp": ts, "X-Loom-Signature": f"v1={mac}"}


def test_protocol_signature_test_vectors_hold() -> None:
    """The test vectors printed in docs/protocol.md are what the server's signer produces."""
    for body, digest in (
        (b'{"a":1}', "25e079f0ade4766fd01176738fe281c3bc05c399d51f7ee8865b86d293159742"),
        (b"", "feedb4b16dc2e92285c54c96b90a6a309a7bc23401442e1695eca1af5540f231"),
    ):
        assert f"`v1={digest}`" in DOC
        headers = signing.sign("example-key", body, timestamp=1700000000)
        assert headers == {"X-Loom-Timestamp": "1700000000", "X-Loom-Signature": f"v1={digest}"}


def test_server_sends_documented_headers_envelope_and_signatures(
    loom: Loom, recorder: Recorder
) -> None:
    """POST with the envelope, GET with a query and no body, POST with the step's own body:
    each carries the documented headers and a signature over exactly the bytes sent."""
    spec = {
        "id": "protocol-send",
        "inputs": {"region": {"type": "string", "default": "eu"}},
        "steps": [
            {"id": "envelope", "type": "http", "url": f"{recorder.url}/envelope"},
            {"id": "get", "type": "http", "method": "GET", "url": f"{recorder.url}/get",
             "query": {"region": "{{ inputs.region }}"}, "depends_on": ["envelope"]},
            {"id": "own", "type": "http", "url": f"{recorder.url}/own",
             "body": {"region": "{{ inputs.region }}"}, "for_each": ["x"]},
        ],
    }  # fmt: skip
    run = loom.run(spec, {"region": "eu"})
    assert run["status"] == "SUCCEEDED", run["error"]
    mine = {path.split("?")[0]: (m, path, h, b) for m, path, h, b in recorder.requests
            if h.get("x-loom-run-id") == run["id"]}  # fmt: skip
    for path, (_method, _qs, headers, body) in mine.items():
        assert signature_ok(KEY, headers, body), path
        assert headers["x-loom-timestamp"].isdigit()
        assert headers["x-loom-flow-id"] == "protocol-send"
        assert headers["x-loom-flow-version"].isdigit()
        assert headers["x-loom-attempt"] == "1"
        assert "x-loom-callback-url" not in headers
    method, _, headers, body = mine["/envelope"]
    envelope = json.loads(body)
    assert (method, headers["content-type"]) == ("POST", "application/json")
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope["idempotency_key"] == headers["idempotency-key"] == f"{run['id']}:envelope"
    assert envelope["callback"] is None
    assert envelope["inputs"] == {"region": "eu"}
    method, path_qs, headers, body = mine["/get"]
    assert (method, path_qs, body) == ("GET", "/get?region=eu", b"")
    assert headers["x-loom-step-id"] == "get"
    method, _, headers, body = mine["/own"]
    assert json.loads(body) == {"region": "eu"}
    assert headers["idempotency-key"] == f"{run['id']}:own:0"


def test_callback_endpoints_answer_as_documented(loom: Loom, recorder: Recorder) -> None:
    spec = {
        "id": "protocol-callback",
        "steps": [{"id": "slow", "type": "http", "url": f"{recorder.url}/async",
                   "mode": "async", "heartbeat_timeout": "20s", "timeout": "60s"}],
    }  # fmt: skip
    loom.apply(spec)
    run_id = loom.trigger(spec["id"])
    wait_until(
        lambda: any(h.get("x-loom-run-id") == run_id for _, _, h, _ in recorder.requests),
        within=20, what="the async delivery",
    )  # fmt: skip
    [(_, _, headers, body)] = [r for r in recorder.requests if r[2].get("x-loom-run-id") == run_id]
    callback = json.loads(body)["callback"]
    assert callback == {
        "url": headers["x-loom-callback-url"], "heartbeat_url": headers["x-loom-heartbeat-url"]
    }  # fmt: skip
    url, beat = callback["url"], callback["heartbeat_url"]
    assert beat == url + "/heartbeat"
    assert "/api/v1/callbacks/" in url
    # the public URL is the proxy's; talk to the server directly
    direct = loom.url + url[url.index("/api/v1/") :]
    result = json.dumps({"status": "SUCCESS", "output": {"rows": 3}, "logs": ["done"]}).encode()

    def post(target: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(target, content=body, headers=headers, timeout=10)

    def code(answer: httpx.Response) -> str:
        assert answer.headers["content-type"].startswith("application/problem+json")
        return str(answer.json()["code"])

    unsigned = post(direct, result, {})
    assert (unsigned.status_code, code(unsigned)) == (401, "signature_rejected")
    wrong_key = post(direct, result, _signed(result, key="not-the-key"))
    assert (wrong_key.status_code, code(wrong_key)) == (401, "signature_rejected")
    stale = post(direct, result, _signed(result, shift=-400))
    assert (stale.status_code, code(stale)) == (401, "signature_rejected")
    future = post(direct, result, _signed(result, shift=400))
    assert future.status_code == 401
    forged = direct.rsplit(".", 1)[0] + "." + "0" * 64
    bad_token = post(forged, result, _signed(result))
    assert (bad_token.status_code, code(bad_token)) == (422, "callback_token_invalid")
    not_json = post(direct, b"<html>", _signed(b"<html>"))
    assert not_json.status_code == 422
    heartbeat = post(direct + "/heartbeat", b"{}", _signed(b"{}"))
    assert heartbeat.status_code == 200
    assert heartbeat.json()["accepted"] is True
    assert heartbeat.json()["deadline"]
    first = post(direct, result, _signed(result))
    assert (first.status_code, first.json()) == (200, {"accepted": True, "deadline": None})
    second = post(direct, result, _signed(result))
    assert (second.status_code, code(second)) == (409, "callback_already_used")
    late_beat = post(direct + "/heartbeat", b"{}", _signed(b"{}"))
    assert (late_beat.status_code, code(late_beat)) == (409, "callback_already_used")
    run = loom.wait(run_id)
    assert run["status"] == "SUCCEEDED"
    assert loom.steps(run)["slow"]["output"] == {"rows": 3}
    assert loom.steps(run)["slow"]["logs"] == ["done"]


def test_pull_worker_endpoints_answer_as_documented(loom: Loom) -> None:
    spec = {
        "id": "protocol-pull",
        "steps": [{"id": "build", "type": "task", "queue": "protocol", "task": "build-report",
                   "payload": {"day": "2026-12-06"}, "timeout": 60}],
    }  # fmt: skip
    loom.apply(spec)
    api = httpx.Client(
        base_url=loom.url + "/api/v1",
        headers={"Authorization": f"Bearer {loom.worker_token}"},
        timeout=30,
    )
    ghost = api.post("/queues/poll", json={"worker_id": "ghost", "queues": ["protocol"]})
    assert (ghost.status_code, ghost.json()["code"]) == (404, "worker_not_registered")
    registered = api.post(
        "/workers", json={"id": "proto-1", "host": "box", "queues": ["protocol"], "version": "1"}
    )
    assert registered.status_code == 201, registered.text
    info = registered.json()
    assert info["id"] == "proto-1"
    assert info["status"] == "active"
    assert info["lease_seconds"] == 3
    assert info["heartbeat_interval"] == 1
    run_id = loom.trigger(spec["id"])
    polled = api.post(
        "/queues/poll",
        json={"worker_id": "proto-1", "queues": ["protocol"], "max_tasks": 4, "wait": 2},
    )
    assert polled.status_code == 200, polled.text
    [task] = polled.json()["tasks"]
    assert set(task) == {"token", "queue", "task", "deliveries", "lease_until", "envelope"}
    assert (task["queue"], task["task"], task["deliveries"]) == ("protocol", "build-report", 1)
    envelope = task["envelope"]
    assert set(envelope) == (ENVELOPE_KEYS - {"callback"}) | {"queue", "task", "payload", "token"}
    assert envelope["payload"] == {"day": "2026-12-06"}
    assert envelope["token"] == task["token"]
    assert envelope["idempotency_key"] == f"{run_id}:build"
    beat = api.post("/workers/proto-1/heartbeat", json={"tasks": [task["token"], "other"]})
    assert beat.json() == {"held": [task["token"]], "lease_seconds": 3}
    result = {"worker_id": "proto-1", "status": "SUCCESS", "output": {"rows": 1}, "logs": ["ok"]}
    done = api.post(f"/tasks/{task['token']}/result", json=result)
    assert done.status_code == 204, done.text
    again = api.post(f"/tasks/{task['token']}/result", json=result)
    assert (again.status_code, again.json()["code"]) == (409, "callback_already_used")
    run = loom.wait(run_id)
    assert run["status"] == "SUCCEEDED"
    assert loom.steps(run)["build"]["output"] == {"rows": 1}
    assert api.delete("/workers/proto-1").status_code == 204
    assert loom.workers()["proto-1"]["status"] == "stopped"
    gone = api.post("/workers/proto-1/heartbeat", json={"tasks": []})
    assert (gone.status_code, gone.json()["code"]) == (404, "worker_not_registered")

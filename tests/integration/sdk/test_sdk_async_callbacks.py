"""An async step end to end over real sockets: 202, heartbeats and a signed callback posted to a
real receiver; a second callback is refused with 409 the way the server does it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from examples.backend import serve
from linkloom import signing
from linkloom.sdk.testing import signed_delivery, task_envelope

KEY = "callback-key"


class Receiver(ThreadingHTTPServer):
    """A tiny stand-in for the server's callback endpoints."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[str, dict, dict[str, str], bool]] = []
        self.completed: set[str] = set()
        self.done = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items()}
        try:
            signing.verify(KEY, raw, headers)
            valid = True
        except signing.SignatureError:
            valid = False
        self.server.posts.append((self.path, json.loads(raw), headers, valid))
        status = 200
        if not self.path.endswith("/heartbeat"):
            if self.path in self.server.completed:
                status = 409
            self.server.completed.add(self.path)
            self.server.done.set()
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_slow_report_answers_202_then_heartbeats_and_calls_back(receiver: Receiver) -> None:
    callback = {
        "url": f"{receiver.url}/api/v1/callbacks/tok1",
        "heartbeat_url": f"{receiver.url}/api/v1/callbacks/tok1/heartbeat",
    }
    envelope = task_envelope(
        run_id="r-async", step_id="report", callback=callback, inputs={"seconds": 1.0, "pages": 2}
    )
    with serve(signing_key=KEY, heartbeat_interval=0.1) as backend:
        body, headers = signed_delivery(envelope, key=KEY)
        started = time.monotonic()
        reply = httpx.post(f"{backend.url}/api/tasks/slow-report", content=body, headers=headers)
        answered_in = time.monotonic() - started
        assert receiver.done.wait(10), "no callback arrived"
    assert reply.status_code == 202
    assert answered_in < 0.8  # answered before the work (1 s) was done
    heartbeats = [p for p in receiver.posts if p[0].endswith("/heartbeat")]
    callbacks = [p for p in receiver.posts if not p[0].endswith("/heartbeat")]
    assert len(heartbeats) >= 2
    assert len(callbacks) == 1
    path, result, _, valid = callbacks[0]
    assert path == "/api/v1/callbacks/tok1"
    assert valid, "the callback must be signed with the shared key"
    assert all(p[3] for p in heartbeats)
    assert result == {
        "status": "SUCCESS",
        "output": {"report": "report-r-async", "pages": 2},
        "logs": ["Rendered page 1/2", "Rendered page 2/2"],
    }


def test_redelivered_async_task_after_completion_returns_the_result(receiver: Receiver) -> None:
    callback = {"url": f"{receiver.url}/api/v1/callbacks/tok2", "heartbeat_url": None}
    envelope = task_envelope(
        run_id="r-again", step_id="report", callback=callback, inputs={"seconds": 0.05, "pages": 1}
    )
    with serve(signing_key=KEY, heartbeat_interval=0.2) as backend:
        body, headers = signed_delivery(envelope, key=KEY)
        first = httpx.post(f"{backend.url}/api/tasks/slow-report", content=body, headers=headers)
        assert receiver.done.wait(10)
        deadline = time.monotonic() + 5
        while True:  # the reply is stored just after the callback is accepted
            body, headers = signed_delivery(envelope, key=KEY)
            again = httpx.post(
                f"{backend.url}/api/tasks/slow-report", content=body, headers=headers
            )
            if again.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        calls = httpx.get(f"{backend.url}/stats").json()["calls"]
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["output"]["report"] == "report-r-again"
    assert calls["slow-report"] == 1
    assert len([p for p in receiver.posts if not p[0].endswith("/heartbeat")]) == 1

"""The SDK stays light: importing it loads no server or web-framework code."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("sqlalchemy", "fastapi", "starlette", "flask", "uvicorn", "pydantic_settings", "alembic")


def test_importing_the_sdk_loads_no_server_dependencies() -> None:
    code = (
        "import json, sys, linkloom.sdk, linkloom.sdk.client, linkloom.sdk.handlers;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    internal = [
        m
        for m in loaded
        if m.startswith(("linkloom.engine", "linkloom.store", "linkloom.api", "linkloom.config"))
    ]
    assert heavy == []
    assert internal == []


def test_the_sdk_works_where_server_packages_cannot_be_imported() -> None:
    """Block every server package (as if only ``linkloom[sdk]`` were installed) and use the SDK."""
    code = f"""
import sys
for name in {HEAVY!r} + ("aiohttp", "httpx_aiohttp", "structlog", "jsonschema", "docker"):
    sys.modules[name] = None  # any import of it now raises ImportError
import asyncio, httpx
from linkloom.sdk import Client, TaskDispatcher
from linkloom.sdk.handlers import TaskRoute
from linkloom.sdk.testing import signed_delivery, task_envelope
d = TaskDispatcher(signing_key="k")
body, headers = signed_delivery(task_envelope(), key="k")
reply = asyncio.run(d.dispatch(TaskRoute(handler=lambda: 1), body=body, headers=headers))
assert reply.body["output"] == 1, reply
api = Client("http://x", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[])))
assert api.list_flows() == []
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
def test_example_backend_runs_as_a_module_on_the_given_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.backend", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "python -m examples.backend exited"
                assert time.monotonic() < deadline, "the example backend did not start"
                time.sleep(0.05)
        assert reply.json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=10)

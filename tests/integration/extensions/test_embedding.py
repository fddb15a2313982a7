"""``linkloom.embed.Loom`` inside a host application: the host's engine and tables, the host's
event loop; and the example orders service (examples/embedded) run for real."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from linkloom.embed import Loom
from tests.support import databases

REPO = Path(__file__).resolve().parents[3]

FLOW = {
    "id": "greet",
    "inputs": {"name": {"type": "string"}},
    "steps": [
        {"id": "hello", "type": "transform", "template": "Hello, {{ inputs.name }}!"},
        {
            "id": "shout",
            "type": "transform",
            "depends_on": ["hello"],
            "template": "{{ steps.hello.output | upper }}",
        },
    ],
    "outputs": {"greeting": "{{ steps.shout.output }}"},
}

host_metadata = sa.MetaData()
notes = sa.Table(
    "host_notes",
    host_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(50)),
)


@pytest.fixture
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    with databases.fresh_database("embed") as url:
        engine = create_async_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def _exercise(engine: AsyncEngine, flows: Path) -> None:
    async with engine.begin() as conn:  # the host's own table
        await conn.run_sync(host_metadata.create_all)
        await conn.execute(notes.insert().values(text="host data"))
    loom = Loom(engine=engine, flows_path=flows, scheduler=False)
    async with loom:
        finished = loom.events()
        run = await loom.trigger("greet", {"name": "Ada"})
        kinds = [e.kind async for e in loom.subscribe(run.id)]
        done = await loom.wait(run.id, timeout=20)
        assert done.status.value == "SUCCEEDED"
        assert done.outputs == {"greeting": "HELLO, ADA!"}
        assert kinds, "subscribe yielded no events"
        first = await anext(finished)
        assert first.id == run.id
        # apply() takes a dict too and bumps the version when the content changes
        changed = {**FLOW, "outputs": {"greeting": "{{ steps.hello.output }}"}}
        version = await loom.apply(changed)
        assert version.version == 2
        assert (await loom.run("greet", {"name": "Bo"}, timeout=20)).outputs == {
            "greeting": "Hello, Bo!"
        }
    # Loom stopped; the host's engine and table are untouched and usable
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(notes.c.text))).scalar_one() == "host data"
        tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    assert {"host_notes", "runs", "flows"} <= set(tables)


def _flows_dir(tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "greet.json").write_text(json.dumps(FLOW))
    return flows


@pytest.mark.slow
async def test_loom_runs_inside_the_host_loop_on_the_hosts_sqlite_engine(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
    try:
        await _exercise(engine, _flows_dir(tmp_path))
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_loom_shares_the_hosts_postgresql_engine(
    pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    await _exercise(pg_engine, _flows_dir(tmp_path))


async def test_loom_runs_a_flow_using_a_plugin_step(hash_plugin: Path, tmp_path: Path) -> None:
    async with Loom(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'l.db'}",
        flows_path=hash_plugin / "flows",
        scheduler=False,
    ) as loom:
        run = await loom.run("fingerprint", {"document": {"title": "hi"}}, timeout=20)
    assert run.status.value == "SUCCEEDED", run
    expected = hashlib.sha256(b'{"title":"HI"}').hexdigest()
    assert run.outputs == {"sha256": expected}


@pytest.fixture
def orders_service(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.embedded", "--port", str(port),
         "--db", str(tmp_path / "orders.db")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "orders.log").open("wb"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "orders.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the orders service did not start"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_example_orders_service_prices_orders_with_embedded_loom(orders_service: str) -> None:
    with httpx.Client(base_url=orders_service, timeout=10) as client:
        bulk = client.post("/orders", json={"item": "apple", "quantity": 12})
        small = client.post("/orders", json={"item": "melon", "quantity": 2})
        assert bulk.status_code == small.status_code == 201
        deadline = time.monotonic() + 30
        while True:
            a = client.get(f"/orders/{bulk.json()['id']}").json()
            b = client.get(f"/orders/{small.json()['id']}").json()
            if a["status"] != "pricing" and b["status"] != "pricing":
                break
            assert time.monotonic() < deadline, (a, b)
            time.sleep(0.1)
    assert a["status"] == "priced"
    assert a["total"] == pytest.approx(5.4)  # 12 x 0.5 with the bulk discount
    assert b["status"] == "priced"
    assert b["total"] == pytest.approx(6.0)

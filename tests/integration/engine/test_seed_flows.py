"""The example specs of the design documents run end to end, verbatim, on a real wired server
(SQLite file, real API app, worker): their hosts (``user-backend:8080``, ``crm.example.com``,
``erp.example.com``, ``api.example.com``) are pointed at local servers by the engine's HTTP
transport, and the values the backends received are asserted."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_harness import Backend, Reply

from examples.backend import RunningBackend, serve
from linkloom.flows.loading import load_flow
from tests.support.llm_server import LlmServer
from tests.support.loom_server import SIGNING_KEY, LoomServer

SEEDS = Path(__file__).resolve().parents[2] / "fixtures" / "specs" / "seeds"


@pytest.fixture(scope="module")
def sdk_backend() -> Iterator[RunningBackend]:
    with serve(signing_key=SIGNING_KEY) as running:
        yield running


@pytest.fixture
def home(tmp_path: Path, sqlite_template: Path) -> Path:
    """A server home whose database is already migrated."""
    shutil.copy(sqlite_template, tmp_path / "loom.db")
    return tmp_path


def seed(name: str):
    return load_flow((SEEDS / name).read_bytes(), filename=name)


@pytest.mark.parametrize(
    ("name", "middle"),
    [("daily-report-linkloom.yaml", "process"), ("daily-report-linkloom-v2.yaml", "process_data")],
)
async def test_seed_daily_report_runs_verbatim_against_the_sdk_backend(
    home: Path, sdk_backend: RunningBackend, name: str, middle: str
) -> None:
    sdk_backend.state.effects.clear()
    async with LoomServer(home, hosts={"user-backend:8080": sdk_backend.url}) as server:
        spec = seed(name)
        await server.services.runs.apply_flow(spec)
        run = await server.services.runs.trigger("daily-report", inputs={})
        done = await server.wait(run.id)
        assert done.status == "SUCCEEDED", done.error
        steps = await server.steps(run.id)
    records = steps["fetch_data"].output["records"]
    assert len(records) == 20
    # process counted the records fetch_data returned: the upstream output reached it.
    assert steps[middle].output == {"total": 20, "valid": 19, "invalid": 1}
    [email] = [e for e in sdk_backend.state.effects if e["kind"] == "email"]
    assert email["key"] == f"{run.id}:send_email"
    assert email["summary"] == {"total": 20, "valid": 19, "invalid": 1}


async def test_seed_automata_sync_orders_passes_response_data_to_the_import_body(
    home: Path, backend: Backend
) -> None:
    orders = [{"id": "o-1", "total": 10}, {"id": "o-2", "total": 99.5}]
    backend.on("/crm/orders", Reply(body={"data": orders, "page": 1}))
    backend.on("/erp/import", Reply(body={"imported": 2}))
    hosts = {"crm.example.com": f"{backend.url}/crm", "erp.example.com": f"{backend.url}/erp"}
    async with LoomServer(home, hosts=hosts) as server:
        await server.services.runs.apply_flow(seed("automata-sync-orders.json"))
        run = await server.services.runs.trigger("sync-orders", inputs={"source_id": "shop-1"})
        done = await server.wait(run.id)
        assert done.status == "SUCCEEDED", done.error
        steps = await server.steps(run.id)
    assert steps["fetch"].outputs == {"orders": orders}
    assert steps["save"].output == {"imported": 2}
    [fetch] = backend.calls_to("/crm/orders")
    [save] = backend.calls_to("/erp/import")
    assert fetch["body"] is None  # a GET
    # {{ .steps.fetch.outputs.orders }} renders the whole list, keeping its JSON type.
    assert save["body"] == orders
    assert save["headers"]["Idempotency-Key"] == f"{run.id}:save"
    assert save["headers"]["X-Loom-Step-Id"] == "save"


async def test_seed_mbflow_http_then_data_adapter_maps_fields(home: Path, backend: Backend) -> None:
    users = [{"id": 1, "name": "ann", "email": "a@x"}, {"id": 2, "name": "bob", "email": "b@x"}]
    backend.on("/users", Reply(body=users))
    async with LoomServer(home, hosts={"api.example.com": backend.url}) as server:
        await server.services.runs.apply_flow(seed("mbflow-wf-123.json"))
        run = await server.services.runs.trigger("wf-123", inputs={})
        done = await server.wait(run.id)
        assert done.status == "SUCCEEDED", done.error
        steps = await server.steps(run.id)
    assert len(backend.calls_to("/users")) == 1
    assert steps["n1"].output == users
    assert steps["n2"].output == [{"username": "ann"}, {"username": "bob"}]


API_TOKEN = "tok-9f8e7d6c5b4a"
LLM_KEY = "sk-local-abcdef123456"

AI_FLOW = {
    # The design's "AI-powered automation": get text, analyse it with an LLM, decide, act.
    "id": "ai-triage",
    "inputs": {"ticket": {"type": "string"}},
    "steps": [
        {
            "id": "get_text",
            "type": "http",
            "method": "GET",
            "url": "https://api.example.com/tickets/{{ inputs.ticket }}",
            "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
            "outputs": {"text": "{{ output.text }}"},
        },
        {
            "id": "analyze",
            "type": "llm",
            "depends_on": ["get_text"],
            "provider": "openai",
            "model": "local-model",
            "base_url": "LLM_BASE",
            "api_key": "{{ secrets.OPENAI_API_KEY }}",
            "system": "Answer in JSON.",
            "prompt": "{{ steps.get_text.outputs.text }}",
            "response_format": "json",
        },
        {
            "id": "decide",
            "type": "condition",
            "depends_on": ["analyze"],
            "condition": "steps.analyze.output.json.words > 3",
            "then": ["escalate"],
            "else": ["auto_reply"],
        },
        {
            "id": "escalate",
            "type": "http",
            "depends_on": ["decide"],
            "url": "https://api.example.com/escalate",
            "body": {"words": "{{ steps.analyze.output.json.words }}", "token_hint": "x"},
        },
        {
            "id": "auto_reply",
            "type": "http",
            "depends_on": ["decide"],
            "url": "https://api.example.com/reply",
            "body": {"echo": "{{ steps.analyze.output.json.echo }}"},
        },
    ],
    "outputs": {"words": "{{ steps.analyze.output.json.words }}"},
}


@pytest.mark.parametrize(("text", "taken", "skipped"), [
    ("please help my order is lost", "escalate", "auto_reply"),
    ("thanks", "auto_reply", "escalate"),
])  # fmt: skip
async def test_llm_decision_flow_runs_with_secrets_kept_out_of_the_database(
    home: Path, backend: Backend, text: str, taken: str, skipped: str
) -> None:
    backend.on("/tickets/T-1", Reply(body={"text": text, "echoed_token": API_TOKEN}))
    leaky_logs = [f"authorised with {API_TOKEN}", "done"]  # a careless backend logs the secret
    backend.on(
        "/escalate",
        Reply(body={"status": "SUCCESS", "output": {"queued": True}, "logs": leaky_logs}),
    )
    backend.on("/reply", Reply(body={"status": "SUCCESS", "output": {"sent": True},
                                     "logs": leaky_logs}))  # fmt: skip
    secrets = {"API_TOKEN": API_TOKEN, "OPENAI_API_KEY": LLM_KEY}
    with LlmServer(api_key=LLM_KEY) as llm:
        flow = {
            **AI_FLOW,
            "steps": [
                {**s, "base_url": llm.base_url} if s["id"] == "analyze" else s
                for s in AI_FLOW["steps"]
            ],
        }
        async with LoomServer(
            home, secrets=secrets, hosts={"api.example.com": backend.url}
        ) as server:
            await server.services.runs.apply_flow(load_flow_dict(flow))
            run = await server.services.runs.trigger("ai-triage", inputs={"ticket": "T-1"})
            done = await server.wait(run.id)
            assert done.status == "SUCCEEDED", done.error
            steps = await server.steps(run.id)
        [asked] = llm.requests
    # The secret reached the provider and the backend, and the LLM answer drove the branch.
    assert asked["headers"]["authorization"] == f"Bearer {LLM_KEY}"
    assert asked["body"]["messages"][-1] == {"role": "user", "content": text}
    assert backend.calls_to("/tickets/T-1")[0]["headers"]["Authorization"] == f"Bearer {API_TOKEN}"
    words = len(text.split())
    assert done.outputs == {"words": words}
    assert steps[skipped].status == "SKIPPED"
    [call] = backend.calls_to(f"/{'escalate' if taken == 'escalate' else 'reply'}")
    if taken == "escalate":
        assert call["body"] == {"words": words, "token_hint": "x"}
    else:
        assert call["body"] == {"echo": text}
    # Neither secret is stored anywhere: outputs, events, logs, attempts, recorded exchanges.
    assert rows_containing(server.db_path, [text])  # the scan does see stored values
    assert rows_containing(server.db_path, ["authorised with"])  # the log line was kept
    leaks = rows_containing(server.db_path, [API_TOKEN, LLM_KEY])
    assert leaks == [], leaks


def load_flow_dict(raw: dict):
    from linkloom.flows.spec import FlowSpec

    return FlowSpec.model_validate(raw)


def rows_containing(db_path: Path, needles: list[str]) -> list[tuple[str, str]]:
    """Every (table, row) of the SQLite file whose text contains one of ``needles``."""
    found = []
    with sqlite3.connect(db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                text = " ".join(str(v) for v in row)
                if any(n in text for n in needles):
                    found.append((table, text[:300]))
    return found

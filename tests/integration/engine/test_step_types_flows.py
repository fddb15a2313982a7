"""The built-in step types run through the real engine: data flows between steps as specs say.

Uses the engine harness (real SQLite, and PostgreSQL when configured) and, for the ``llm``
step, the local OpenAI/Anthropic-compatible server from ``tests/support/llm_server.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_harness import Reply

from linkloom.engine.steps.subflow import SubflowExecutor
from tests.support.llm_server import LlmServer

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "flows"


def example(name: str, backend_url: str) -> dict[str, Any]:
    text = (EXAMPLES / name / "flow.yaml").read_text()
    return yaml.safe_load(text.replace("http://127.0.0.1:8081", backend_url))


async def steps_by_id(engine, run_id: str) -> dict[str, Any]:
    return {s.step_id: s for s in await engine.runs.list_steps(run_id) if s.item_index is None}


@pytest.mark.parametrize(
    ("threshold", "imported", "skipped"),
    [(100, [2, 3], "nothing_to_import"), (1000, [], "import_orders")],
)
async def test_order_triage_example_filters_and_branches(engine, threshold, imported, skipped):
    orders = [{"id": 1, "total": 50}, {"id": 2, "total": 150}, {"id": 3, "total": 300}]
    engine.backend.on("/crm/orders", Reply(body={"data": orders}))
    engine.backend.on("/erp/import", Reply(body={"status": "SUCCESS", "output": {"ok": True}}))
    await engine.apply(example("order-triage", engine.backend.url))

    run = await engine.run("order-triage", {"threshold": threshold})

    assert run.status.value == "SUCCEEDED", run
    assert run.outputs == {"imported": imported}
    steps = await steps_by_id(engine, run.id)
    assert steps[skipped].status.value == "SKIPPED"
    assert steps["any_large"].output == {
        "result": bool(imported),
        "branch": "then" if imported else "else",
    }
    if imported:
        (call,) = engine.backend.calls_to("/erp/import")
        assert [o["id"] for o in call["body"]["orders"]] == imported


async def test_parallel_merge_example_merges_branch_outputs(engine):
    engine.backend.on(
        "/api/tasks/process-a",
        Reply(body={"status": "SUCCESS", "output": {"a": {"items": [1], "count": 1}}}),
    )
    engine.backend.on(
        "/api/tasks/process-b",
        Reply(body={"status": "SUCCESS", "output": {"b": {"items": [2, 3], "count": 2}}}),
    )
    await engine.apply(example("parallel-merge", engine.backend.url))

    run = await engine.run("parallel-merge")

    assert run.status.value == "SUCCEEDED", run
    assert run.outputs["count"] == 3
    assert run.outputs["merged"] == {
        "a": {"items": [1], "count": 1},
        "b": {"items": [2, 3], "count": 2},
    }


async def test_transform_merge_condition_delay_and_fan_out(engine):
    await engine.apply(
        {
            "id": "types",
            "steps": [
                {"id": "a", "type": "transform", "template": {"x": 1, "list": [1, 2]}},
                {"id": "b", "type": "transform", "template": {"y": "{{ inputs.n }}", "list": [3]}},
                {"id": "m", "type": "merge", "depends_on": ["a", "b"]},
                {
                    "id": "c",
                    "type": "merge",
                    "mode": "concat",
                    "depends_on": ["a", "b"],
                    "when": "{{ false }}",
                },
                {"id": "d", "type": "delay", "duration": 0.2, "depends_on": ["m"]},
                {
                    "id": "cond",
                    "type": "condition",
                    "condition": "steps.m.output.y > 5",
                    "depends_on": ["d"],
                    "then": ["big"],
                    "else": ["small"],
                },
                {"id": "big", "type": "transform", "depends_on": ["cond"], "template": "big"},
                {"id": "small", "type": "transform", "depends_on": ["cond"], "template": "small"},
                {
                    "id": "fan",
                    "type": "transform",
                    "depends_on": ["m"],
                    "for_each": "{{ steps.a.output.list }}",
                    "template": "{{ item * 10 + index }}",
                },
            ],
            "outputs": {
                "m": "{{ steps.m.output }}",
                "fan": "{{ steps.fan.output }}",
                "small": "{{ steps.small.output }}",
                "waited": "{{ steps.d.output.waited >= 0.2 }}",
            },
        }
    )

    run = await engine.run("types", {"n": 3})

    assert run.status.value == "SUCCEEDED", run
    assert run.outputs == {
        "m": {"x": 1, "y": 3, "list": [3]},
        "fan": [10, 21],
        "small": "small",
        "waited": True,
    }
    steps = await steps_by_id(engine, run.id)
    assert steps["c"].status.value == "SKIPPED"
    assert steps["big"].status.value == "SKIPPED"


async def test_hostile_template_fails_the_step_not_the_worker(engine):
    await engine.apply(
        {
            "id": "hostile",
            "steps": [
                {
                    "id": "bad",
                    "type": "transform",
                    "template": "{% for a in range(10000) %}{% for b in range(10000) %}"
                    "{% endfor %}{% endfor %}",
                    "retry": {"max_attempts": 1},
                },
            ],
        }
    )
    run = await engine.run("hostile")
    assert run.status.value == "FAILED"
    steps = await steps_by_id(engine, run.id)
    assert steps["bad"].error["kind"] == "template"


async def test_llm_step_against_local_provider(engine):
    with LlmServer() as llm:
        await engine.apply(
            {
                "id": "ask",
                "steps": [
                    {
                        "id": "summarise",
                        "type": "llm",
                        "provider": "anthropic",
                        "model": "local",
                        "base_url": llm.base_url,
                        "system": "Reply in JSON.",
                        "prompt": "orders for {{ inputs.who }}",
                        "response_format": "json",
                    },
                    {
                        "id": "use",
                        "type": "transform",
                        "depends_on": ["summarise"],
                        "template": "{{ steps.summarise.output.json.words }}",
                    },
                ],
                "outputs": {"words": "{{ steps.use.output }}"},
            }
        )
        run = await engine.run("ask", {"who": "Ann"})
    assert run.status.value == "SUCCEEDED", run
    assert run.outputs == {"words": 3}


async def test_flow_step_runs_a_child_flow_and_returns_its_outputs(engine):
    runs = engine.runs

    async def start_subflow(*, flow_id, inputs, parent_run_id=None, parent_step_id=None, **_):
        child = await runs.trigger(
            flow_id,
            inputs=inputs,
            trigger="subflow",
            parent_run_id=parent_run_id,
            parent_step_id=parent_step_id,
        )
        return child.id

    async def read_run(run_id):
        child = await runs.get_run(run_id)
        return child.status.value, child.outputs or {}

    engine.worker.runner.services.start_subflow = start_subflow
    engine.worker.runner.services.read_run = read_run
    engine.worker.runner.executors["flow"] = SubflowExecutor(poll_seconds=0.05)
    await engine.apply(
        {
            "id": "child",
            "inputs": {"n": {"type": "integer"}},
            "steps": [{"id": "double", "type": "transform", "template": "{{ inputs.n * 2 }}"}],
            "outputs": {"doubled": "{{ steps.double.output }}"},
        }
    )
    await engine.apply(
        {
            "id": "parent",
            "steps": [
                {"id": "call", "type": "flow", "flow": "child", "inputs": {"n": "{{ inputs.n }}"}}
            ],
            "outputs": {"result": "{{ steps.call.output.doubled }}"},
        }
    )
    run = await engine.run("parent", {"n": 21})
    assert run.status.value == "SUCCEEDED", run
    assert run.outputs == {"result": 42}

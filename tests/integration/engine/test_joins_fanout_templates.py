"""Real runs (engine harness: SQLite file, and PostgreSQL when configured): skipping propagates
through every join rule, fan-out keeps item order with per-item retries and partial failure, and
hostile templates fail their step quickly without harming the worker; templates see the run
context and declared outputs, keeping JSON types."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from engine_harness import FAST_RETRY, SECRET, Engine, Reply

ONE_TRY = {"max_attempts": 1}


def join_step(step_id: str, upstream: list[str], join: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "transform",
        "depends_on": upstream,
        "join": join,
        "template": {"ran": step_id, "ok": "{{ steps.ok.output }}"},
    }


def after(step_id: str) -> dict[str, Any]:
    """A default (all_success) step after ``step_id``: shows whether a skip propagates."""
    return {"id": f"after_{step_id}", "type": "transform", "depends_on": [step_id],
            "template": "after {{ steps[\"" + step_id + "\"].output.ran }}"}  # fmt: skip


RULES = ["all_success", "all_done", "one_success", "none_failed"]
# upstream pair → does the join step run, per rule (in RULES order)?
EXPECTED = {
    "ok+skipped": (False, True, True, True),
    "ok+failed": (False, True, True, False),
    "skipped+skipped": (False, True, False, True),
}
UPSTREAM = {
    "ok+skipped": ["ok", "skipped"],
    "ok+failed": ["ok", "boom"],
    "skipped+skipped": ["skipped", "skipped2"],
}


async def test_skip_propagates_through_every_join_rule_in_a_real_run(engine: Engine) -> None:
    steps: list[dict[str, Any]] = [
        {"id": "ok", "type": "transform", "template": "fine"},
        {"id": "skipped", "type": "transform", "when": "{{ inputs.go }}", "template": "x"},
        {"id": "skipped2", "type": "transform", "depends_on": ["skipped"], "template": "y"},
        {"id": "boom", "type": "transform", "template": "{{ inputs.nope.deeper }}",
         "retry": ONE_TRY},
    ]  # fmt: skip
    for case, upstream in UPSTREAM.items():
        for rule in RULES:
            sid = f"{case.replace('+', '_')}__{rule}"
            steps += [join_step(sid, upstream, rule), after(sid)]
    await engine.apply({"id": "joins", "inputs": {"go": {"type": "boolean"}}, "steps": steps})

    run = await engine.run("joins", {"go": False})

    assert run.status.value == "FAILED"  # boom failed
    status = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert status["skipped"].status.value == "SKIPPED"
    assert status["skipped2"].status.value == "SKIPPED"  # skipping propagated to a dependent
    assert status["boom"].status.value == "FAILED"
    for case, runs_per_rule in EXPECTED.items():
        for rule, runs in zip(RULES, runs_per_rule, strict=True):
            sid = f"{case.replace('+', '_')}__{rule}"
            want = "SUCCEEDED" if runs else "SKIPPED"
            assert status[sid].status.value == want, (sid, status[sid].status)
            assert status[f"after_{sid}"].status.value == want, sid  # and on down the chain
            if runs:
                assert status[sid].output == {"ran": sid, "ok": "fine"}
                assert status[f"after_{sid}"].output == f"after {sid}"


def item_step(engine: Engine, **extra: Any) -> dict[str, Any]:
    return {
        "id": "fan",
        "type": "http",
        "url": engine.backend.url + "/item/{{ item }}",
        "for_each": "{{ inputs.items }}",
        "max_parallel": 2,
        "retry": FAST_RETRY,
        **extra,
    }


def ok(value: int, delay: float = 0.0) -> Reply:
    return Reply(body={"status": "SUCCESS", "output": {"v": value}}, delay=delay)


async def test_fan_out_retries_an_item_on_its_own_and_keeps_results_in_order(
    engine: Engine,
) -> None:
    b = engine.backend
    b.on("/item/10", ok(10, delay=0.3))  # the first item finishes last
    b.on("/item/20", Reply(status=500), Reply(status=503), ok(20))
    b.on("/item/30", ok(30))
    b.on("/item/40", ok(40))
    await engine.apply({
        "id": "fan-order",
        "inputs": {"items": {"type": "array"}},
        "steps": [item_step(engine)],
        "outputs": {"all": "{{ steps.fan.output }}"},
    })  # fmt: skip

    run = await engine.run("fan-order", {"items": [10, 20, 30, 40]})

    assert run.status.value == "SUCCEEDED", run
    assert run.outputs == {"all": [{"v": 10}, {"v": 20}, {"v": 30}, {"v": 40}]}
    calls = b.calls_to("/item/20")
    assert [c["headers"]["X-Loom-Attempt"] for c in calls] == ["1", "2", "3"]
    assert {c["headers"]["Idempotency-Key"] for c in calls} == {f"{run.id}:fan:1"}
    for path in ("/item/10", "/item/30", "/item/40"):
        assert len(b.calls_to(path)) == 1  # the other items were not retried
    children = [s for s in await engine.runs.list_steps(run.id) if s.item_index is not None]
    assert [(c.item_index, c.attempt) for c in children] == [(0, 1), (1, 3), (2, 1), (3, 1)]


async def test_fan_out_partial_failure_fails_only_that_item(engine: Engine) -> None:
    b = engine.backend
    for n in (10, 20, 40):
        b.on(f"/item/{n}", ok(n))
    b.on("/item/30", Reply(status=422, body={"detail": "bad item"}))
    await engine.apply({
        "id": "fan-partial",
        "inputs": {"items": {"type": "array"}},
        "steps": [item_step(engine),
                  {"id": "next", "type": "transform", "depends_on": ["fan"], "template": "x"}],
    })  # fmt: skip

    run = await engine.run("fan-partial", {"items": [10, 20, 30, 40]})

    assert run.status.value == "FAILED"
    steps = await engine.runs.list_steps(run.id)
    children = {s.item_index: s for s in steps if s.item_index is not None}
    assert {i: c.status.value for i, c in children.items()} == {
        0: "SUCCEEDED", 1: "SUCCEEDED", 2: "FAILED", 3: "SUCCEEDED",
    }  # fmt: skip
    assert children[2].error["status"] == 422
    assert len(b.calls_to("/item/30")) == 1  # a 4xx is not retried
    assert children[3].output == {"v": 40}
    by_id = {s.step_id: s for s in steps if s.item_index is None}
    assert by_id["fan"].status.value == "FAILED"
    assert by_id["next"].status.value == "SKIPPED"
    letters = await engine.runs.list_dead_letters(flow_id="fan-partial")
    assert [(d.step_id, d.item_index) for d in letters] == [("fan", 2)]


HOSTILE = {
    "class-walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ cycler.__init__.__globals__.os.system('id') }}",
    "huge-range": "{{ range(10**9) | list | length }}",
    "nested-loops": "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}"
    "{% endfor %}{% endfor %}",
    "huge-string": "{{ 'x' * 10**10 }}",
}


@pytest.mark.parametrize("template", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_template_fails_its_step_fast_and_the_worker_goes_on(
    engine: Engine, template: str
) -> None:
    await engine.apply({
        "id": "hostile",
        "steps": [
            {"id": "bad", "type": "transform", "template": template, "retry": ONE_TRY},
            {"id": "fine", "type": "transform", "template": "{{ 6 * 7 }}"},
        ],
    })  # fmt: skip
    started = time.perf_counter()
    run = await engine.run("hostile", wait=10)
    elapsed = time.perf_counter() - started

    assert run.status.value == "FAILED"
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["bad"].error["kind"] == "template"
    assert steps["bad"].error["message"]
    assert steps["fine"].output == 42  # the same worker kept serving the run
    assert elapsed < 5


async def test_templates_see_run_context_and_declared_outputs_keep_json_types(
    engine: Engine,
) -> None:
    await engine.apply({
        "id": "context",
        "steps": [
            {"id": "info", "type": "transform",
             "template": {"id": "{{ run.id }}", "flow": "{{ run.flow }}",
                          "version": "{{ run.version }}", "trigger": "{{ run.trigger }}",
                          "at": "{{ run.scheduled_at }}", "rows": [{"n": 1}, {"n": 2}]},
             "outputs": {"rows": "{{ output.rows }}", "count": "{{ output.rows | length }}",
                         "label": "run {{ output.flow }} v{{ output.version }}"}},
            {"id": "use", "type": "transform", "depends_on": ["info"],
             "template": {"rows": "{{ steps.info.outputs.rows }}",
                          "total": "{{ steps.info.outputs.rows | sum(attribute='n') }}"}},
        ],
        "outputs": {"label": "{{ steps.info.outputs.label }}", "use": "{{ steps.use.output }}"},
    })  # fmt: skip
    fire = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    run = await engine.runs.trigger("context", inputs={}, trigger="schedule", fire_time=fire)
    async with asyncio.timeout(10):
        done = await engine.runs.wait(run.id)

    assert done.status.value == "SUCCEEDED", done
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["info"].output == {
        "id": run.id, "flow": "context", "version": 1, "trigger": "schedule",
        "at": fire.isoformat(), "rows": [{"n": 1}, {"n": 2}],
    }  # fmt: skip
    assert steps["info"].outputs == {"rows": [{"n": 1}, {"n": 2}], "count": 2,
                                     "label": "run context v1"}  # fmt: skip
    assert done.outputs == {"label": "run context v1",
                            "use": {"rows": [{"n": 1}, {"n": 2}], "total": 3}}  # fmt: skip


async def test_secrets_in_failures_logs_and_outputs_are_stored_scrubbed(engine: Engine) -> None:
    b = engine.backend
    b.on(
        "/login",
        Reply(
            body={"status": "SUCCESS", "output": {"echo": SECRET}, "logs": [f"token was {SECRET}"]}
        ),
    )
    b.on("/use", Reply(body={"status": "FAILED", "error": f"token {SECRET} expired",
                             "logs": [f"rejected {SECRET}"]}))  # fmt: skip
    await engine.apply({
        "id": "secret-failures",
        "steps": [
            {"id": "login", "type": "http", "url": f"{b.url}/login",
             "headers": {"X-Token": "{{ secrets.api_token }}"},
             "body": {"token": "{{ secrets.api_token }}"},
             "outputs": {"seen": "{{ output.echo }}"}},
            {"id": "use", "type": "http", "url": f"{b.url}/use", "depends_on": ["login"],
             "headers": {"Authorization": "Bearer {{ secrets.api_token }}"}, "retry": ONE_TRY},
        ],
    })  # fmt: skip

    run = await engine.run("secret-failures")

    assert run.status.value == "FAILED"
    assert b.calls_to("/login")[0]["body"] == {"token": SECRET}  # the backend got the real value
    assert b.calls_to("/use")[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert "expired" in steps["use"].error["message"]
    dump = await all_rows_text(engine)
    assert "expired" in dump  # errors …
    assert "rejected" in dump  # … and logs were stored …
    assert SECRET not in dump  # … without the secret, in every table


async def all_rows_text(engine: Engine) -> str:
    """Every row of every table of the engine's database, as text."""
    import sqlalchemy as sa

    from linkloom.store.tables import metadata

    parts: list[str] = []
    async with engine.db.reader.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                parts.append(" ".join(str(v) for v in row))
    return "\n".join(parts)

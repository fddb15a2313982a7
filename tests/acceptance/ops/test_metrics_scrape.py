"""Every metric family ``linkloom.metrics`` declares is really recorded: the fully wired app
(SQLite, its own worker and scheduler, real HTTP) runs flows against a real local backend, a
proposal's checks replay a run in the sandbox, and ``/metrics`` is scraped before and after.
Each family must have gained samples (the registry is per process, so earlier tests may have
left some: the test compares the two scrapes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from linkloom import metrics, wiring
from linkloom.api.app import create_app
from linkloom.engine.records import RunFilter
from linkloom.flows.spec import FlowSpec
from linkloom.sandbox.inprocess import InProcessRunner
from tests.acceptance.api.api_harness import SIGNING_KEY, settings_for
from tests.support.backends import IdempotentBackend

GAUGES = {"loom_build_info", "loom_queue_ready_steps", "loom_queue_running_steps"}
GAUGES |= {"loom_queue_oldest_ready_age_seconds"}


class Backend(IdempotentBackend):
    """Idempotent effects, except ``/broken``, which always answers HTTP 500."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/broken"):
            return web.json_response({"error": "down"}, status=500)
        return await super().handle(request)


def report(url: str, *, label: str = "ops") -> dict[str, Any]:
    return {
        "id": "report",
        "steps": [
            {"id": "fetch", "type": "http", "url": f"{url}/fetch"},
            {
                "id": "shape",
                "type": "transform",
                "depends_on": ["fetch"],
                "template": {"to": label, "token": "{{ steps.fetch.output }}"},
            },
        ],
    }


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    with Backend(signing_key=SIGNING_KEY) as running:
        yield running


def scrape_values(text: str) -> dict[str, dict[tuple[str, tuple[Any, ...]], float]]:
    """family -> {(sample name, labels): value}."""
    out: dict[str, dict[tuple[str, tuple[Any, ...]], float]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return out


async def test_metrics_every_family_gains_samples_from_real_work(
    tmp_path: Path, backend: Backend
) -> None:
    seed = tmp_path / "seed" / "report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(yaml.safe_dump(report(backend.url), sort_keys=False))
    settings = settings_for(
        f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
        tmp_path,
        server={"run_scheduler": True, "auth": False},
        retention={"runs_days": 30},
        scheduler={"tick_seconds": 0.2},
        flows={"seed_from": str(tmp_path / "seed")},
    )
    # Real HTTP to the real backend.
    services = wiring.build_services(settings, sandbox_runner=InProcessRunner())
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://loom.test") as client,
    ):
        before = scrape_values((await client.get("/metrics")).text)
        assert (await client.post("/api/v1/repo/sync")).status_code == 200
        broken = {
            "id": "broken",
            "steps": [
                {
                    "id": "call",
                    "type": "http",
                    "url": f"{backend.url}/broken",
                    "retry": {"max_attempts": 2, "initial_delay": 0.05},
                }
            ],
        }
        ticking = {
            "id": "ticking",
            "schedules": [{"id": "every-second", "interval": 1}],
            "steps": [{"id": "t", "type": "transform", "template": 1}],
        }
        for spec in (broken, ticking):
            await services.runs.apply_flow(FlowSpec.model_validate(spec))
        run_ids = []
        for flow_id in ("report", "broken"):
            answer = await client.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": {}})
            assert answer.status_code == 201, answer.text
            run_ids.append(answer.json()["id"])
        async with asyncio.timeout(20):
            done = [await services.runs.wait(r, poll=0.05) for r in run_ids]
        assert [r.status.value for r in done] == ["SUCCEEDED", "FAILED"]

        changed = yaml.safe_dump(report(backend.url, label="team"), sort_keys=False)
        opened = await client.post("/api/v1/proposals", json={"title": "t", "specs": [changed]})
        assert opened.status_code == 201, opened.text
        sandbox = {c["name"]: c["status"] for c in opened.json()["checks"]}["sandbox"]
        assert sandbox == "passed", opened.text

        async with asyncio.timeout(20):  # the interval schedule fires within a second or two
            while True:
                if (await services.runs.list_runs(RunFilter(flow_id="ticking"))).items:
                    break
                await asyncio.sleep(0.1)
        # Retention, 60 days on: the failed run goes (the succeeded one is a fixture case).
        # "ticking" keeps its 10 newest runs as fixture cases; on a slow machine it has fired
        # more than 10 times by now, and its older runs go too (which this test leaves alone).
        later = services.runs.clock.now() + timedelta(days=60)
        purged = await wiring.retention(settings, services.db, services.runs.clock).purge(now=later)
        assert purged.by_flow.get("broken") == 1, purged
        assert "report" not in purged.by_flow, purged
        after_text = (await client.get("/metrics")).text
    after = scrape_values(after_text)

    declared = {m.name for m in metrics.REGISTRY.collect()}
    assert declared - after.keys() == set(), "families missing from /metrics"
    unchanged = sorted(n for n in declared - GAUGES if after[n] == before.get(n, {}))
    assert unchanged == [], f"families without new samples: {unchanged}"
    for gauge in GAUGES:
        assert after[gauge], f"{gauge} has no sample"
    codes = {dict(labels)["code"] for (_n, labels) in after["loom_backend_responses"]}
    assert {"200", "500"} <= codes
    sandbox_samples = after["loom_sandbox_run_duration_seconds"]
    assert any(dict(lb).get("outcome") == "succeeded" for (_n, lb) in sandbox_samples)

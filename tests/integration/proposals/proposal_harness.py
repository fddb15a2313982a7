"""A proposal service on a real git repo in tmp_path, the real engine in memory and the
in-process sandbox: production runs are recorded through a fake backend, then replayed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows import loading
from linkloom.flows.gitstore import FlowsRepo
from linkloom.proposals.memory import InMemoryAuditLog, InMemoryProposalStore
from linkloom.proposals.models import ProposalSettings
from linkloom.proposals.service import ProposalService
from linkloom.sandbox.inprocess import InProcessRunner
from linkloom.testing import FrozenClock, InMemoryRunStore, StaticSecrets

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
BACKEND = "http://127.0.0.1:8081"
FLOW: dict[str, Any] = {
    "id": "daily-report",
    "inputs": {"day": {"type": "string", "default": "2026-11-21"}},
    "schedules": [{"id": "nightly", "cron": "0 3 * * *", "timezone": "UTC"}],
    "steps": [
        {"id": "fetch", "type": "http", "url": f"{BACKEND}/api/tasks/fetch-data"},
        {
            "id": "shape",
            "type": "transform",
            "depends_on": ["fetch"],
            "template": {
                "title": "Report for {{ inputs.day }}",
                "count": "{{ steps.fetch.output.rows | length }}",
            },
        },
        {
            "id": "send",
            "type": "http",
            "depends_on": ["shape"],
            "url": f"{BACKEND}/api/tasks/send-email",
            "retry": {"max_attempts": 1},
        },
    ],
}


def flow_yaml(flow: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(flow or FLOW, sort_keys=False)


def backend(request: httpx.Request) -> httpx.Response:
    envelope = json.loads(request.content)
    if request.url.path.endswith("fetch-data"):
        output = {"rows": [{"n": 1}, {"n": 2}], "day": envelope["inputs"]["day"]}
    else:
        output = {"sent_to": "team@example.org", "title": envelope["upstream"]["shape"]["output"]}
    return httpx.Response(200, json={"status": "SUCCESS", "output": output})


@dataclass
class World:
    repo: FlowsRepo
    runs: RunService
    clock: FrozenClock
    store: InMemoryProposalStore
    audit: InMemoryAuditLog
    service: ProposalService
    worker: Worker
    http: httpx.AsyncClient

    async def production_runs(self, days: list[str]) -> list[str]:
        ids = []
        for day in days:
            self.clock.advance(3600)
            run = await self.runs.trigger("daily-report", inputs={"day": day})
            await self.worker.run_until_idle()
            assert (await self.runs.get_run(run.id)).status.value == "SUCCEEDED"
            ids.append(run.id)
        return ids

    def actions(self) -> list[str]:
        return [e.action for e in self.audit.entries]


async def make_world(tmp_path: Path, *, required_approvals: int = 1) -> World:
    seed = tmp_path / "seed" / "daily-report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(flow_yaml())
    repo = FlowsRepo(tmp_path / "flows")
    head = repo.init(seed_from=tmp_path / "seed")
    store = InMemoryRunStore()
    clock = FrozenClock(T0)
    secrets = StaticSecrets({})
    runs = RunService(store=store, clock=clock, secrets=secrets)
    http = httpx.AsyncClient(transport=httpx.MockTransport(backend))
    services = StepServices(http=http, clock=clock, secrets=secrets)
    worker = Worker(store=store, executors=builtin_executors(), services=services, specs=runs.specs)
    await runs.apply_flow(loading.load_flow(flow_yaml()), source="sync", git_commit=head)
    audit = InMemoryAuditLog()
    proposals = InMemoryProposalStore()

    async def runner() -> InProcessRunner:
        return InProcessRunner()

    service = ProposalService(
        repo=repo,
        store=proposals,
        runs=runs,
        clock=clock,
        runner=runner,
        audit=audit,
        settings=ProposalSettings(required_approvals=required_approvals, fixture_runs=3),
    )
    return World(
        repo=repo,
        runs=runs,
        clock=clock,
        store=proposals,
        audit=audit,
        service=service,
        worker=worker,
        http=http,
    )

"""Gathering a flow's fixture cases: recent production runs plus the repo's cases.

``production_cases`` reads the last successful and the last failed runs through the engine's
``RunService`` (or anything with its ``list_runs``/``list_steps``/``list_exchanges``): failed runs
are cases too, so a fix can show as "newly passing". ``flow_cases`` adds the hand-written cases
from ``flows/<id>/fixtures/`` in the flows repo (a repo case with the same name wins).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from linkloom.engine.models import RunStatus
from linkloom.engine.records import RunFilter
from linkloom.sandbox import fixtures

if TYPE_CHECKING:
    from linkloom.engine.service import RunService


async def production_cases(
    runs: RunService,
    flow_id: str,
    *,
    limit: int = 10,
    failed: int = 0,
    secrets: Iterable[str] = (),
) -> list[fixtures.FixtureCase]:
    """The last ``limit`` successful and ``failed`` failed non-sandbox runs of ``flow_id`` as
    scrubbed cases, newest first within each."""
    secret_values = list(secrets)
    found: list[fixtures.FixtureCase] = []
    for status, wanted in ((RunStatus.SUCCEEDED, limit), (RunStatus.FAILED, failed)):
        found += await _cases(runs, flow_id, status, wanted, secret_values)
    return found


async def _cases(
    runs: RunService, flow_id: str, status: RunStatus, wanted: int, secrets: list[str]
) -> list[fixtures.FixtureCase]:
    found: list[fixtures.FixtureCase] = []
    cursor: str | None = None
    while len(found) < wanted:
        page = await runs.list_runs(
            RunFilter(flow_id=flow_id, status=status), limit=wanted, cursor=cursor
        )
        for run in page.items:
            if getattr(run, "sandbox", False):
                continue
            found.append(
                fixtures.case_from_run(
                    run=run,
                    steps=await runs.list_steps(run.id),
                    exchanges=await runs.list_exchanges(run.id),
                    secrets=secrets,
                )
            )
            if len(found) >= wanted:
                break
        cursor = page.next_cursor
        if cursor is None:
            break
    return found


def flow_cases(
    production: Iterable[fixtures.FixtureCase], repo_texts: Mapping[str, str]
) -> list[fixtures.FixtureCase]:
    """Production cases (newest first) followed by the repo's, names unique (repo wins)."""
    repo = fixtures.cases_from_texts(repo_texts)
    names = {c.name for c in repo}
    return [c for c in production if c.name not in names] + repo

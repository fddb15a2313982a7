"""Fixtures: export a production run as a fixture case, and check a flow's fixtures for drift."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from linkloom.access import Role
from linkloom.api.deps import require_role
from linkloom.api.routes import proposals as proposal_routes
from linkloom.api.routes.proposals import Proposals
from linkloom.api.schemas.common import AUTHED, problem_responses
from linkloom.api.schemas.proposals import DriftOut, FixtureOut
from linkloom.flows import gitstore
from linkloom.sandbox import fixtures

router = APIRouter(prefix="/api/v1", tags=["fixtures"])


@router.get(
    "/runs/{run_id}/fixture",
    summary="A run as a scrubbed fixture case (YAML), ready to commit next to its flow",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def export_fixture(
    run_id: str,
    service: Proposals,
    name: Annotated[str | None, Query(description="Case name (default: run-<id>).")] = None,
) -> FixtureOut:
    case = await service.export_fixture(run_id, name=name)
    return FixtureOut(
        name=case.name,
        flow_id=case.flow_id,
        path=gitstore.fixture_path(case.flow_id, case.name),
        yaml=fixtures.dumps(case),
    )


@router.get(
    "/flows/{flow_id}/fixtures/drift",
    summary="Compare the flow's repo fixtures with what production sees now",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def fixture_drift(
    flow_id: str,
    service: Proposals,
    runs: Annotated[int, Query(ge=1, le=200, description="Recent runs to compare with.")] = 20,
) -> DriftOut:
    reports = await service.check_fixtures(flow_id, runs=runs)
    return DriftOut(
        flow_id=flow_id, ok=all(r.ok for r in reports), cases=[r.to_dict() for r in reports]
    )


def mutating_routes() -> set[tuple[str, str]]:
    """``(method, path)`` of the proposal and fixture routes that change something (each is
    audited; see their tests)."""
    found = set()
    for module_router in (proposal_routes.router, router):
        for route in module_router.routes:
            for method in getattr(route, "methods", None) or ():
                if method in ("POST", "PUT", "PATCH", "DELETE"):
                    found.add((method, getattr(route, "path", "")))
    return found

"""Flows: list, read, apply (a new version), delete, versions, rollback, pause, trigger,
schedules and triggers."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from linkloom import wiring
from linkloom.access import Role
from linkloom.api.deps import Audit, Services, get_services, require_role
from linkloom.api.schemas.common import AUTHED, Page, problem_responses
from linkloom.api.schemas.flows import (
    BackfillIn,
    BackfillOut,
    FlowIn,
    FlowOut,
    FlowSummaryOut,
    FlowVersionDetailOut,
    FlowVersionOut,
    RollbackIn,
    ScheduleOut,
    SecretNamesOut,
    TriggerIn,
    TriggerOut,
)
from linkloom.api.schemas.runs import RunOut
from linkloom.engine.errors import FlowNotFound
from linkloom.errors import InvalidInput, Unavailable
from linkloom.flows import loading
from linkloom.flows.errors import SpecInvalid
from linkloom.flows.spec import FlowSpec, WebhookTrigger
from linkloom.scheduler import cron

router = APIRouter(prefix="/api/v1", tags=["flows"])


@router.get(
    "/secrets",
    summary="Names of the server's secrets (never their values)",
    description="What `{{ secrets.NAME }}` can read here; `loom validate --server` checks "
    "specs against it. Names are case-sensitive.",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED),
)
async def secret_names(services: Services) -> SecretNamesOut:
    return SecretNamesOut(names=sorted(services.settings.secrets))


@router.get(
    "/flows",
    summary="List flows",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED),
)
async def list_flows(
    services: Services,
    tag: Annotated[str | None, Query(description="Only flows with this tag.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Page[FlowSummaryOut]:
    flows = sorted(await services.runs.list_flows(), key=lambda f: f.id)
    if cursor:
        flows = [f for f in flows if f.id > cursor]
    items: list[FlowSummaryOut] = []
    for flow in flows:
        spec = await _spec_or_none(services, flow.id, flow.current_version)
        if tag is not None and (spec is None or tag not in spec.tags):
            continue
        items.append(FlowSummaryOut.from_domain(flow, spec))
        if len(items) > limit:
            break
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=items[-1].id if more else None)


@router.get(
    "/flows/{flow_id}",
    summary="A flow with its current spec",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def get_flow(flow_id: str, services: Services) -> FlowOut:
    flow = await services.runs.get_flow(flow_id)
    version = await services.runs.get_flow_version(flow_id, flow.current_version)
    spec = await _spec_or_none(services, flow_id, flow.current_version)
    return FlowOut.build(flow, version, spec)


@router.put(
    "/flows/{flow_id}",
    summary="Apply a spec: it becomes the flow's new current version (unless unchanged)",
    description="Direct apply bypasses proposal review, so it needs the admin role. The spec is "
    "validated like `loom validate`; problems come back as a 422 with `problems`.",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED),
)
async def put_flow(
    flow_id: str, body: FlowIn, services: Services, audit: Audit, request: Request
) -> FlowVersionOut:
    text = body.spec if isinstance(body.spec, str) else json.dumps(body.spec)
    result = loading.check_flow(
        text, filename=f"{flow_id}.yaml", policy=wiring.spec_policy(services.settings)
    )
    if result.spec is None:
        # The server checks more than a local `loom validate` can (its secrets' names), and the
        # caller's file name is not known here: name the flow and the command that sees it all.
        raise SpecInvalid(
            "Flow spec {flow_id!r} is invalid: {summary}; "
            "run 'loom validate --server FILE' to list every problem, the server's checks too.",
            problems=result.problems,
            flow_id=flow_id,
        )
    spec = result.spec
    if spec.id != flow_id:
        raise InvalidInput(
            f"the spec's id {spec.id!r} differs from the URL's {flow_id!r}; "
            f"PUT it to /api/v1/flows/{spec.id}"
        )
    before = await services.store.get_flow(flow_id)
    actor = request.state.actor.name
    version = await services.runs.apply_flow(spec, source="apply", actor=actor)
    created = (
        before is None or before.deleted_at is not None or before.current_version != version.version
    )
    if created:
        await audit("flow.apply", "flow", flow_id, version=version.version)
    return FlowVersionOut.from_domain(version, created=created)


@router.delete(
    "/flows/{flow_id}",
    summary="Delete a flow (its runs and versions are kept)",
    status_code=204,
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404),
)
async def delete_flow(flow_id: str, services: Services, audit: Audit) -> Response:
    await services.runs.delete_flow(flow_id)
    await audit("flow.delete", "flow", flow_id)
    return Response(status_code=204)


@router.get(
    "/flows/{flow_id}/versions",
    summary="The flow's versions, oldest first",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def list_versions(flow_id: str, services: Services) -> list[FlowVersionOut]:
    return [FlowVersionOut.from_domain(v) for v in await services.runs.list_flow_versions(flow_id)]


@router.get(
    "/flows/{flow_id}/versions/{version}",
    summary="One version of a flow, with its spec",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def get_version(flow_id: str, version: int, services: Services) -> FlowVersionDetailOut:
    await services.runs.get_flow(flow_id)
    return FlowVersionDetailOut.detail(await services.runs.get_flow_version(flow_id, version))


@router.post(
    "/flows/{flow_id}/rollback",
    summary="Make an earlier version current again (as a new version)",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404),
)
async def rollback(
    flow_id: str, body: RollbackIn, services: Services, audit: Audit, request: Request
) -> FlowVersionOut:
    # One mechanism for rollback: a commit on the flows repo's main branch and a new version,
    # exactly like promoting a proposal, so a later 'loom sync' cannot undo it.
    from linkloom.api.routes.proposals import proposal_service

    await services.runs.get_flow_version(flow_id, body.version)
    proposals = await proposal_service(request.app)
    await proposals.rollback(flow_id, to_version=body.version, actor=request.state.actor.name)
    version = (await services.runs.get_flow(flow_id)).current_version
    current = await services.runs.get_flow_version(flow_id, version)
    await audit("flow.rollback", "flow", flow_id, to=body.version, version=current.version)
    return FlowVersionOut.from_domain(current)


@router.post(
    "/flows/{flow_id}/pause",
    summary="Pause the flow's schedules and triggers",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404),
)
async def pause(flow_id: str, services: Services, audit: Audit) -> FlowSummaryOut:
    flow = await services.runs.set_paused(flow_id, True)
    await audit("flow.pause", "flow", flow_id)
    return FlowSummaryOut.from_domain(flow, await _spec_or_none(services, flow_id))


@router.post(
    "/flows/{flow_id}/resume",
    summary="Resume a paused flow",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404),
)
async def resume(flow_id: str, services: Services, audit: Audit) -> FlowSummaryOut:
    flow = await services.runs.set_paused(flow_id, False)
    await audit("flow.resume", "flow", flow_id)
    return FlowSummaryOut.from_domain(flow, await _spec_or_none(services, flow_id))


@router.post(
    "/flows/{flow_id}/runs",
    summary="Trigger a run (manual trigger)",
    description="Inputs are checked against the flow's declared inputs; a 422 names each bad "
    "one. Text values are coerced to the declared type.",
    status_code=201,
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404, 409),
)
async def trigger(
    flow_id: str, body: TriggerIn, services: Services, audit: Audit, request: Request
) -> RunOut:
    run = await services.runs.trigger(
        flow_id,
        inputs=body.inputs,
        trigger="manual",
        actor=request.state.actor.name,
        version=body.version,
    )
    await audit("run.trigger", "run", run.id, flow_id=flow_id, version=run.version)
    return RunOut.from_domain(run)


@router.get(
    "/flows/{flow_id}/schedules",
    summary="The schedules of the flow's current version, with their next fire times",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def schedules(
    flow_id: str, services: Services, n: Annotated[int, Query(ge=1, le=50)] = 5
) -> list[ScheduleOut]:
    spec = await services.runs.get_spec(flow_id)
    now = services.runs.clock.now().astimezone(UTC)
    out = []
    for schedule_id, schedule in zip(spec.schedule_ids(), spec.schedules, strict=True):
        fires = cron.next_fires(schedule, after=now, n=n) if schedule.enabled else []
        out.append(
            ScheduleOut(
                id=schedule_id,
                cron=schedule.cron,
                interval=schedule.interval,
                timezone=schedule.timezone,
                enabled=schedule.enabled,
                next_fire_times=fires,
            )
        )
    return out


@router.post(
    "/flows/{flow_id}/backfill",
    summary="Create the runs the schedules would have created in a past window",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def backfill(flow_id: str, body: BackfillIn, request: Request, audit: Audit) -> BackfillOut:
    scheduler = get_services(request).scheduler
    if scheduler is None:
        raise Unavailable("the scheduler is not configured in this server")
    start, end = body.start, body.end
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise InvalidInput("start and end must be timezone-aware, with end after start")
    report = await scheduler.backfill(
        flow_id,
        start=start,
        end=end,
        schedule_id=body.schedule_id,
        limit=body.limit,
        dry_run=body.dry_run,
    )
    if not body.dry_run:
        await audit("flow.backfill", "flow", flow_id, runs=len(report.created))
    return BackfillOut(
        fire_times=[t for _sid, t in report.fire_times],
        created=list(report.created),
        existing=report.existing,
        dry_run=report.dry_run,
    )


@router.get(
    "/flows/{flow_id}/triggers",
    summary="The webhook and event triggers of the flow's current version",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def triggers(flow_id: str, services: Services) -> list[TriggerOut]:
    spec = await services.runs.get_spec(flow_id)
    out = []
    for item in spec.triggers:
        config = item.model_dump(mode="json", exclude={"id", "type", "secret"})
        url = f"/api/v1/webhooks/{flow_id}/{item.id}" if isinstance(item, WebhookTrigger) else None
        out.append(TriggerOut(id=item.id, type=item.type, url=url, config=config))
    return out


async def _spec_or_none(
    services: Services, flow_id: str, version: int | None = None
) -> FlowSpec | None:
    try:
        return await services.runs.get_spec(flow_id, version)
    except (FlowNotFound, InvalidInput):
        return None

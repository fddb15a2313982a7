"""Dashboard, flow page (DAG, versions and spec diffs, schedules, trigger form, runs) and the
static assets."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from linkloom import wiring
from linkloom.access import Role
from linkloom.engine.errors import InputsInvalid
from linkloom.engine.models import RunStatus
from linkloom.engine.records import Run, RunFilter
from linkloom.flows.spec import FlowSpec
from linkloom.http import context
from linkloom.scheduler import cron
from linkloom.web import assets, rendering, session, views
from linkloom.web.routing import WebRoute

router = APIRouter(route_class=WebRoute)

RECENT = 20  # runs per flow the dashboard's success rate is computed over
ASSETS = {"app.css": "text/css", "app.js": "text/javascript", "favicon.svg": "image/svg+xml"}


services = context.services


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in ASSETS:
        return Response(status_code=404)
    return FileResponse(
        assets.STATIC / name,
        media_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/favicon.ico")
async def favicon() -> Response:
    """Browsers ask for /favicon.ico on their own; every page also links the SVG."""
    return await static("favicon.svg")


@router.get("/static/editor/{name}")
async def editor_static(name: str, v: str = "") -> Response:
    """The built editor (``scripts/build-web``); a versioned URL is cached for good."""
    path = assets.editor_file(name)
    if path is None:
        return Response(status_code=404)
    current = v and v == assets.editor().version
    return FileResponse(
        path,
        media_type=assets.FILES[name],
        headers={
            "Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/")
async def dashboard(request: Request, q: str = "", status: str = "", tag: str = "") -> Response:
    await session.require(request, Role.viewer)
    svc = services(request)
    now = svc.runs.clock.now()
    rows = []
    tags: set[str] = set()
    flows = [f for f in sorted(await svc.runs.list_flows(), key=lambda f: f.id) if not f.deleted_at]
    # One read for every flow's recent runs; specs come from the cache by the version just read.
    recent_by_flow = await svc.runs.recent_runs([f.id for f in flows], limit=RECENT)
    for flow in flows:
        spec = await _spec(svc, flow.id, flow.current_version)
        tags.update(spec.tags if spec else ())
        recent = recent_by_flow.get(flow.id, [])
        last = recent[0] if recent else None
        rows.append(
            {
                "flow": flow,
                "spec": spec,
                "last": last,
                "rate": views.success_rate(recent),
                "recent": len([r for r in recent if r.status.terminal]),
                "running": sum(1 for r in recent if not r.status.terminal),
                "next_fire": _next_fire(spec, now) if spec and not flow.paused else None,
            }
        )
    shown = [r for r in rows if _matches(r, q=q, status=status, tag=tag)]
    active: list[Run] = []
    for state in (RunStatus.RUNNING, RunStatus.PENDING):
        active.extend((await svc.runs.list_runs(RunFilter(status=state), limit=50)).items)
    any_runs = any(r["last"] is not None for r in rows)
    return rendering.page(
        request,
        "dashboard.html",
        title="Dashboard",
        rows=shown,
        total=len(rows),
        active=active,
        active_empty="Nothing is running or waiting to run." if any_runs else "No runs yet.",
        q=q,
        status=status,
        tag=tag,
        tags=sorted(tags),
        statuses=[s.value for s in RunStatus],
    )


def _matches(row: dict[str, Any], *, q: str, status: str, tag: str) -> bool:
    spec: FlowSpec | None = row["spec"]
    text = " ".join([row["flow"].id, row["flow"].name or "", *(spec.tags if spec else ())]).lower()
    if q and q.lower() not in text:
        return False
    if tag and (spec is None or tag not in spec.tags):
        return False
    if status:
        last = row["last"]
        if status == "NEVER":
            return last is None
        return last is not None and last.status.value == status
    return True


def _next_fire(spec: FlowSpec, now: Any) -> Any:
    fires = [cron.next_fire(s, after=now.astimezone(UTC)) for s in spec.schedules if s.enabled]
    return min(fires) if fires else None


async def _spec(svc: wiring.Services, flow_id: str, version: int | None = None) -> FlowSpec | None:
    try:
        return await svc.runs.get_spec(flow_id, version)
    except Exception:  # a version the current model rejects: show the flow without it
        return None


@router.get("/flows/{flow_id}")
async def flow_page(
    request: Request, flow_id: str, a: int | None = None, b: int | None = None
) -> Response:
    await session.require(request, Role.viewer)
    return await _flow(request, flow_id, diff_from=a, diff_to=b)


async def _flow(
    request: Request,
    flow_id: str,
    *,
    diff_from: int | None = None,
    diff_to: int | None = None,
    values: dict[str, Any] | None = None,
    problems: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    svc = services(request)
    flow = await svc.runs.get_flow(flow_id)
    spec = await svc.runs.get_spec(flow_id)
    versions = await svc.runs.list_flow_versions(flow_id)
    runs = (await svc.runs.list_runs(RunFilter(flow_id=flow_id), limit=25)).items
    last = runs[0] if runs else None
    statuses = views.step_statuses(await svc.runs.list_steps(last.id)) if last else {}
    by_number = {v.version: v for v in versions}
    diff = None
    if len(versions) > 1 or diff_from is not None:
        new = by_number.get(diff_to or flow.current_version) or versions[-1]
        old = by_number.get(diff_from) if diff_from else by_number.get(new.version - 1)
        if old is None:
            old = versions[0]
        if old.version != new.version:
            diff = {"old": old.version, "new": new.version, "table": views.spec_diff(old, new)}
    now = svc.runs.clock.now().astimezone(UTC)
    schedules = [
        {
            "id": sid,
            "schedule": s,
            "describe": cron.describe(s),
            "fires": cron.next_fires(s, after=now, n=5) if s.enabled else [],
        }
        for sid, s in zip(spec.schedule_ids(), spec.schedules, strict=True)
    ]
    problems = problems or []
    return rendering.page(
        request,
        "flow.html",
        status_code=status_code,
        title=spec.name or flow.id,
        flow=flow,
        spec=spec,
        versions=list(reversed(versions)),
        runs=runs,
        last=last,
        dag=views.dag_view(spec, statuses),
        diff=diff,
        schedules=schedules,
        fields=views.trigger_fields(spec, values=values, problems=problems),
        problems=problems,
    )


@router.post("/flows/{flow_id}/trigger")
async def trigger(request: Request, flow_id: str) -> Response:
    actor = await session.require(request, Role.author)
    form = await session.form(request)
    svc = services(request)
    spec = await svc.runs.get_spec(flow_id)
    inputs, problems = views.read_trigger_form(spec, form)
    shown = {k[len("input.") :]: v for k, v in form.items() if k.startswith("input.")}
    if not problems:
        try:
            run = await svc.runs.trigger(flow_id, inputs=inputs, trigger="manual", actor=actor.name)
        except InputsInvalid as exc:
            problems = list(exc.fields.get("problems") or [str(exc)])
        else:
            await _audit(
                request, "run.trigger", "run", run.id, flow_id=flow_id, version=run.version
            )
            return RedirectResponse(f"/runs/{run.id}", status_code=303)
    return await _flow(request, flow_id, values=shown, problems=problems, status_code=422)


async def _audit(
    request: Request, action: str, kind: str, object_id: str | None, **details: Any
) -> None:
    await context.audit(request)(action, kind, object_id, **details)  # the API's entries

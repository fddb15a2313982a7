"""The visual flow editor: its pages, and the three JSON calls its script makes.

Pages (the editor reads everything it needs from the page; the browser app is built from
``frontend/`` into ``web/static/editor/``):

    GET  /flows/{id}/edit                 the production spec of a flow
    GET  /editor/new                      an empty flow
    GET  /proposals/{id}/edit?flow=<id>   a flow as its proposal's branch has it; Save revises

Calls (session cookie; POSTs carry the page's CSRF token in ``X-CSRF-Token``):

    GET  /editor/schema    the flow spec's JSON Schema with plugins' step types (``loom schema``)
    POST /editor/validate  ``{"text"}`` → ``loom validate``'s problems (the server's policy)
    POST /editor/save      ``{"text", "title", "description"}`` or ``{"text", "proposal_id",
                           "message"}`` → ``{"proposal_id", "url"}``; checks run after the answer

Anyone who may read a flow may open the editor; without the author role it is read-only and
the save call is refused (403) like the API's.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from markupsafe import Markup
from starlette.background import BackgroundTask

from linkloom import wiring
from linkloom.access import Role
from linkloom.errors import InvalidInput, LinkloomError, NotFound
from linkloom.flows import loading, shapes
from linkloom.flows.models import Policy
from linkloom.web import assets, rendering, session
from linkloom.web.routes.pages import services
from linkloom.web.routes.proposals import proposal_service
from linkloom.web.routing import STATUS, WebRoute

router = APIRouter(route_class=WebRoute)

SHAPE_NAMES = {
    "mbflow": "MBFlow (workflow nodes and edges)",
    "linkloom": "Link Loom tasks with dependsOn",
    "automata": "Automata (name, config, timeout_sec)",
}
MAX_TEXT = 1_000_000  # characters of spec text the editor sends


@router.get("/flows/{flow_id}/edit")
async def edit_flow(request: Request, flow_id: str) -> Response:
    actor = await session.require(request, Role.viewer)
    await services(request).runs.get_flow(flow_id)  # 404 for an unknown flow
    source = await _source(request, flow_id, ref=None)
    return await _page(request, actor, mode="flow", flow_id=flow_id, source=source)


@router.get("/editor/new")
async def new_flow(request: Request) -> Response:
    actor = await session.require(request, Role.viewer)
    source = {"text": "", "path": None, "shape": "canonical", "from": "new"}
    return await _page(request, actor, mode="new", flow_id=None, source=source)


@router.get("/proposals/{proposal_id}/edit")
async def edit_proposal(request: Request, proposal_id: str, flow: str = "") -> Response:
    actor = await session.require(request, Role.viewer)
    service = await proposal_service(request)
    if service is None:
        raise NotFound("this server has no proposal service (the flows repo is not configured)")
    proposal = await service.get(proposal_id)
    flow_id = flow or (proposal.flows[0] if proposal.flows else "")
    if flow_id not in proposal.flows:
        raise NotFound(f"proposal {proposal_id} does not change flow {flow_id!r}")
    source = await _source(request, flow_id, ref=proposal.branch)
    return await _page(
        request,
        actor,
        mode="proposal",
        flow_id=flow_id,
        source=source,
        proposal={
            "id": proposal.id,
            "title": proposal.title,
            "revision": proposal.revision,
            "status": str(getattr(proposal.status, "value", proposal.status)),
        },
    )


async def _source(request: Request, flow_id: str, *, ref: str | None) -> dict[str, Any]:
    """The spec text to edit: the file in the flows repo (at ``ref``, else main) when there is
    one, else the current version as canonical YAML; a seed shape is converted (and said so)."""
    service = await proposal_service(request)
    text, path, origin = "", None, "version"
    if service is not None:
        found = await service.spec_file(flow_id, **({"ref": ref} if ref else {}))
        if found is not None:
            text, path, origin = found.text, found.path, "repo"
    if not text:
        spec = await services(request).runs.get_spec(flow_id)
        text = loading.to_canonical_yaml(spec)
    shape = _shape(text)
    out: dict[str, Any] = {"text": text, "path": path, "shape": shape, "from": origin}
    if shape != "canonical":
        result = loading.check_flow(text, filename=path or f"{flow_id}.yaml")
        if result.spec is not None:
            out["original"] = text
            out["text"] = loading.to_canonical_yaml(result.spec)
    return out


def _shape(text: str) -> str:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return "canonical"
    return shapes.normalise(data).shape if isinstance(data, dict) else "canonical"


async def _page(
    request: Request,
    actor: Any,
    *,
    mode: str,
    flow_id: str | None,
    source: dict[str, Any],
    proposal: dict[str, Any] | None = None,
) -> Response:
    settings = services(request).settings
    boot = {
        "mode": mode,
        "flowId": flow_id,
        "proposal": proposal,
        "text": source["text"],
        "path": source["path"],
        "from": source["from"],
        "shape": source["shape"],
        "shapeName": SHAPE_NAMES.get(source["shape"]),
        "original": source.get("original"),
        "readOnly": not actor.role.allows(Role.author),
        "secrets": sorted(settings.secrets.keys()),  # names only, never values
        "csrf": session.csrf_token(request),
        "proposals": await proposal_service(request) is not None,
    }
    title = f"Edit {flow_id}" if flow_id else "New flow"
    return rendering.page(
        request,
        "editor.html",
        title=title,
        mode=mode,
        flow_id=flow_id,
        proposal=proposal,
        # </script> cannot occur in the JSON: "<" is escaped (json.dumps would not).
        boot=Markup(json.dumps(boot).replace("<", "\\u003c")),
        editor=assets.editor(),
    )


@router.get("/editor/schema")
async def schema(request: Request) -> Response:
    await session.require(request, Role.viewer)
    return JSONResponse(loading.spec_json_schema(), headers=rendering.SECURITY_HEADERS)


def _policy(request: Request) -> Policy:
    return wiring.spec_policy(services(request).settings)


def _text(data: dict[str, Any]) -> str:
    text = data.get("text")
    if not isinstance(text, str):
        raise InvalidInput("send the spec as 'text' (YAML or JSON)")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"the spec is longer than {MAX_TEXT} characters")
    return text


@router.post("/editor/validate")
async def validate(request: Request) -> Response:
    """``loom validate`` on the editor's text, with the server's policy."""
    try:
        await session.require(request, Role.viewer)
        text = _text(await session.json_body(request))
    except (LinkloomError, session.LoginRequired) as exc:
        return _error(exc)
    result = loading.check_flow(text, filename="flow.yaml", policy=_policy(request))
    problems = [p.to_dict() for p in result.problems]
    errors = sum(p["severity"] == "error" for p in problems)
    return JSONResponse(
        {"valid": errors == 0, "errors": errors, "problems": problems, "shape": _shape(text)},
        headers=rendering.SECURITY_HEADERS,
    )


@router.post("/editor/save")
async def save(request: Request) -> Response:
    """Open a proposal with the spec (or commit it as a new revision of one)."""
    try:
        actor = await session.require(request, Role.author)
        data = await session.json_body(request)
        text = _text(data)
        service = await proposal_service(request)
        if service is None:
            raise InvalidInput("this server has no proposal service: configure the flows repo")
        proposal_id = str(data.get("proposal_id") or "")
        if proposal_id:
            await service.revise(
                proposal_id,
                actor=actor.name,
                specs=[text],
                message=str(data.get("message") or "").strip(),
                run_checks=False,
            )
        else:
            opened = await service.open(
                title=str(data.get("title") or "").strip(),
                description=str(data.get("description") or "").strip(),
                author=actor.name,
                specs=[text],
                run_checks=False,
            )
            proposal_id = opened.id
    except (LinkloomError, session.LoginRequired) as exc:
        return _error(exc)
    return JSONResponse(
        {"proposal_id": proposal_id, "url": f"/proposals/{proposal_id}"},
        status_code=201,
        headers=rendering.SECURITY_HEADERS,
        background=BackgroundTask(service.run_checks, proposal_id, actor=actor.name),
    )


def _error(exc: Exception) -> Response:
    if isinstance(exc, session.LoginRequired):
        return JSONResponse(
            {"error": "your session ended: sign in again", "code": "not_authenticated"}, 401
        )
    assert isinstance(exc, LinkloomError)
    status = next((c for cat, c, _ in STATUS if isinstance(exc, cat)), 500)
    body: dict[str, Any] = {"error": str(exc), "code": exc.code}
    problems = getattr(exc, "problems", None)
    if problems:
        body["problems"] = [p.to_dict() for p in problems]
    return JSONResponse(body, status_code=status, headers=rendering.SECURITY_HEADERS)

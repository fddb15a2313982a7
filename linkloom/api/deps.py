"""Dependencies routes declare with ``Annotated`` aliases, over ``http.context`` (the request's
services, actor and audit writer, shared with the web UI).

    @router.post("/runs/{run_id}/cancel", dependencies=[require_role(Role.author)])
    async def cancel(run_id: str, services: Services, audit: Audit) -> RunOut: ...

Every route under ``/api/v1`` declares exactly one ``require_role(...)`` (or is listed in
``PUBLIC_ROUTES``: webhooks and callbacks authenticate by signature); a test walks every route
with every role.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from linkloom import auth, wiring
from linkloom.access import Role
from linkloom.http import context

# Routes that carry no token: they check an HMAC signature instead.
PUBLIC_ROUTES = frozenset(
    {
        ("POST", "/api/v1/webhooks/{flow_id}/{trigger_id}"),
        ("POST", "/api/v1/callbacks/{token}"),
        ("POST", "/api/v1/callbacks/{token}/heartbeat"),
        ("POST", "/api/v1/git/webhooks/github"),
        ("POST", "/api/v1/git/webhooks/gitlab"),
        ("POST", "/api/v1/git/webhooks/gitea"),
    }
)


get_services = context.services  # for routes that take the request itself


def require_role(role: Role) -> Any:
    """A route dependency that lets only ``role`` and higher roles through."""

    async def check(actor: Annotated[auth.Actor, Depends(context.actor)]) -> None:
        actor.require(role)

    check.required_role = role  # type: ignore[attr-defined]  # read by the role-matrix test
    return Depends(check)


def required_role(dependency_call: Any) -> Role | None:
    """The role a ``require_role`` dependency demands (None for any other dependency)."""
    return getattr(dependency_call, "required_role", None)


Services = Annotated[wiring.Services, Depends(get_services)]
Actor = Annotated[auth.Actor, Depends(context.actor)]
Audit = Annotated[context.AuditWriter, Depends(context.audit)]


def api_routes(app: Any) -> list[tuple[str, str, Role | None]]:
    """Every ``(method, path template, required role)`` the app serves under ``/api/v1``."""
    found: list[tuple[str, str, Role | None]] = []

    def visit(routes: Any) -> None:
        for route in routes:
            contexts = getattr(route, "effective_route_contexts", None)
            if contexts is not None:  # FastAPI's included router
                visit(contexts())
                continue
            path = getattr(route, "path", "")
            if not path.startswith("/api/v1"):
                continue
            roles = [
                required_role(dep.dependency) for dep in getattr(route, "dependencies", []) or []
            ]
            role = next((r for r in roles if r is not None), None)
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    found.append((method, path, role))

    visit(app.routes)
    return found

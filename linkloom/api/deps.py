"""Dependencies routes declare with ``Annotated`` aliases; collaborators live on ``app.state``.

    @router.post("/runs/{run_id}/cancel", dependencies=[require_role(Role.author)])
    async def cancel(run_id: str, services: Services, audit: Audit) -> RunOut: ...

Every route under ``/api/v1`` declares exactly one ``require_role(...)`` (or is listed in
``PUBLIC_ROUTES``: webhooks and callbacks authenticate by signature); a test walks every route
with every role.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from linkloom import wiring
from linkloom.access import AuditEntry, Role
from linkloom.api import auth

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


def get_services(request: Request) -> wiring.Services:
    services: wiring.Services = request.app.state.services
    return services


async def get_actor(request: Request) -> auth.Actor:
    authenticator: auth.Authenticator = request.app.state.auth
    actor = await authenticator.actor(request.headers.get("authorization"))
    request.state.actor = actor
    return actor


def require_role(role: Role) -> Any:
    """A route dependency that lets only ``role`` and higher roles through."""

    async def check(actor: Annotated[auth.Actor, Depends(get_actor)]) -> None:
        actor.require(role)

    check.required_role = role  # type: ignore[attr-defined]  # read by the role-matrix test
    return Depends(check)


def required_role(dependency_call: Any) -> Role | None:
    """The role a ``require_role`` dependency demands (None for any other dependency)."""
    return getattr(dependency_call, "required_role", None)


AuditWriter = Callable[..., Awaitable[None]]


def get_audit(request: Request) -> AuditWriter:
    """Write one audit entry for the calling actor: ``await audit(action, type, id, **details)``."""

    async def write(
        action: str, object_type: str, object_id: str | None = None, **details: Any
    ) -> None:
        actor: auth.Actor | None = getattr(request.state, "actor", None)
        services = get_services(request)
        entry = AuditEntry(
            actor=actor.name if actor else details.pop("actor", None),
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=_jsonable(details),
            at=services.runs.clock.now(),
        )
        await services.audit.record(entry)

    return write


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if value is None or isinstance(value, str | int | float | bool | list | dict):
            out[key] = value
        else:
            out[key] = str(value)
    return out


Services = Annotated[wiring.Services, Depends(get_services)]
Actor = Annotated[auth.Actor, Depends(get_actor)]
Audit = Annotated[AuditWriter, Depends(get_audit)]


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

"""What a request carries: the app's services, the calling actor and an audit writer for it.

Everything the edges use lives on ``app.state.services`` (``wiring.Services``); nothing is kept
in module globals. The API resolves the actor from the ``Authorization`` header (``actor``);
the web UI from its session cookie (``web.session``). Either stores it on ``request.state``,
where the audit writer finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from linkloom import auth, wiring
from linkloom.access import AuditEntry

AuditWriter = Callable[..., Awaitable[None]]


def services(request: Request) -> wiring.Services:
    """The services of the app serving ``request``."""
    found: wiring.Services = request.app.state.services
    return found


async def actor(request: Request) -> auth.Actor:
    """The actor of the request's bearer token (remembered on ``request.state``)."""
    found = await services(request).auth.actor(request.headers.get("authorization"))
    request.state.actor = found
    return found


def audit(request: Request) -> AuditWriter:
    """Write one audit entry for the calling actor: ``await audit(action, type, id, **details)``."""

    async def write(
        action: str, object_type: str, object_id: str | None = None, **details: Any
    ) -> None:
        caller: auth.Actor | None = getattr(request.state, "actor", None)
        found = services(request)
        entry = AuditEntry(
            actor=caller.name if caller else details.pop("actor", None),
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=_jsonable(details),
            at=found.runs.clock.now(),
        )
        await found.audit.record(entry)

    return write


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if value is None or isinstance(value, str | int | float | bool | list | dict):
            out[key] = value
        else:
            out[key] = str(value)
    return out

"""The Jinja2 environment of the UI (autoescape on) and its filters.

Templates live in ``web/templates``; ``page(request, name, **context)`` renders one with the
common context (the actor, the CSRF token, the nav). Every value is escaped unless a view
marks a fragment it escaped itself as ``Markup`` (the difflib and proposal diff tables).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from linkloom.access import Role
from linkloom.web import assets

TEMPLATES = Path(__file__).parent / "templates"

env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "svg"], default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(moment: datetime | None) -> str:
    """``2026-11-22 09:59:27 UTC`` (empty for None)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return duration((end - start).total_seconds())


def pretty(value: Any) -> str:
    """JSON, indented, for <pre> blocks (strings stay as they are)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def status_class(status: Any) -> str:
    return f"st-{str(getattr(status, 'value', status) or 'none').lower()}"


env.filters.update(when=when, iso=iso, duration=duration, pretty=pretty, status_class=status_class)


env.globals.update(between=between, Role=Role, shell_version=assets.shell_version)


def page(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a full page with the common context."""
    from linkloom.web import session  # the session module renders pages too

    actor = getattr(request.state, "web_actor", None)
    common = {
        "request": request,
        "actor": actor,
        "csrf": session.csrf_token(request),
        "can": (lambda role: actor is not None and actor.role.allows(Role(role))),
        "path": request.url.path,
        "notes": getattr(_services(request), "personal", None) is not None,
    }
    html = env.get_template(name).render(**common, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _services(request: Request) -> Any:
    return getattr(request.app.state, "services", None)


def fragment(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(name).render(**context), headers=SECURITY_HEADERS)


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

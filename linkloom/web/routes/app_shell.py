"""The installable app (a Progressive Web App): its manifest, its service worker and icons.

``/manifest.webmanifest`` makes the UI installable ("Install Link Loom" in Chrome and Edge
opens it in its own window); ``/sw.js`` is the service worker (``static/sw.js`` with this
server's shell version filled in): the shell cached per version, the last copy of each page seen
kept for reading offline, Web Push messages shown as OS notifications. Pages link the stylesheet
and script with the same version, so a new server never runs an old shell.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from linkloom.web import assets
from linkloom.web.routing import WebRoute

router = APIRouter(route_class=WebRoute)

THEME = "#15233b"


@router.get("/manifest.webmanifest")
async def manifest(request: Request) -> Response:
    v = assets.shell_version()
    body = {
        "id": "/",
        "name": "Link Loom",
        "short_name": "Link Loom",
        "description": "Workflows changed the way code is changed: runs, proposals, reviews.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f7f8fa",
        "theme_color": THEME,
        "icons": [
            {"src": f"/static/icons/icon-192.png?v={v}", "sizes": "192x192", "type": "image/png"},
            {"src": f"/static/icons/icon-512.png?v={v}", "sizes": "512x512", "type": "image/png"},
            {
                "src": f"/static/icons/maskable-512.png?v={v}",
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
        ],
        "shortcuts": [
            {"name": "Runs", "url": "/runs"},
            {"name": "Proposals", "url": "/proposals"},
        ],
    }
    return JSONResponse(
        body,
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/sw.js")
async def service_worker() -> Response:
    text = (assets.STATIC / "sw.js").read_text(encoding="utf-8")
    text = text.replace("__LOOM_VERSION__", assets.shell_version()).replace(
        "__LOOM_SHELL_FILES__", json.dumps(assets.shell_files())
    )
    return Response(
        text,
        media_type="text/javascript",
        headers={
            # the browser checks for a new worker on every navigation
            "Cache-Control": "no-cache",
            "Service-Worker-Allowed": "/",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/static/icons/{name}")
async def icon(name: str, v: str = "") -> Response:
    if name not in assets.ICONS:
        return Response(status_code=404)
    current = v and v == assets.shell_version()
    return FileResponse(
        assets.STATIC / "icons" / name,
        media_type="image/png",
        headers={
            "Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )

"""The web UI's routes: one ``router`` (mounted at ``/`` by ``create_app``).

Pages answer HTML, never problem+json: ``WebRoute`` turns a missing session into a redirect to
``/login`` and a ``LinkloomError`` into an error page with the category's status (403, 404, …).

    pages.py      dashboard, flow page, trigger form, static assets
    runs.py       run page, step drawer, live stream (SSE), cancel and retry
    ops.py        login and logout, dead letters and re-drive, audit log
    proposals.py  proposal list and review page
    notifications.py  deliveries and their attempts, channels and test messages
    editor.py     the visual flow editor's pages and its schema, validate and save calls
    me.py         what each user is notified of: preferences, the open app's stream, Web Push
    app_shell.py  the installable app: manifest, service worker, icons
"""

from __future__ import annotations

from fastapi import APIRouter

from linkloom.web.routes import app_shell, editor, me, notifications, ops, pages, proposals, runs

router = APIRouter(include_in_schema=False)
for _module in (pages, runs, ops, proposals, notifications, editor, me, app_shell):
    router.include_router(_module.router)

__all__ = ["router"]

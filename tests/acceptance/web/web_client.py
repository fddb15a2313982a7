"""A browser-like client for the web UI's acceptance tests: session cookie, same-origin POSTs."""

from __future__ import annotations

import re

import httpx

from linkloom.access import Role
from tests.acceptance.api.api_harness import Api

ORIGIN = "http://loom.test"


def browser(api: Api, role: Role | None = None) -> httpx.AsyncClient:
    """A client that behaves like a browser: the session cookie and same-origin POSTs."""
    client = api.client(None, follow_redirects=False)
    client.headers["Origin"] = ORIGIN
    if role is not None:
        client.cookies.set("loom_session", api.tokens[role])
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)

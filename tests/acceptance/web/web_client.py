"""A browser-like client for the web UI's acceptance tests: session cookie, same-origin POSTs."""

from __future__ import annotations

import re
from typing import Any

import httpx

from linkloom.access import Role
from tests.acceptance.api.api_harness import Api

ORIGIN = "http://loom.test"


class Browser(httpx.AsyncClient):
    """Signs in through the login form on entering (``async with``), as a person would, so the
    client holds a server-side session cookie, never the token."""

    def __init__(self, *, sign_in_with: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sign_in_with = sign_in_with

    async def __aenter__(self) -> Browser:
        await super().__aenter__()
        if self.sign_in_with is not None:
            response = await self.post("/login", data={"token": self.sign_in_with, "next": "/"})
            assert response.status_code == 303, response.text
        return self


def browser(api: Api, role: Role | None = None) -> Browser:
    """A client that behaves like a browser: signed in as ``role``, same-origin POSTs."""
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    return Browser(
        sign_in_with=api.tokens[role] if role is not None else None,
        transport=transport,
        base_url=ORIGIN,
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)

"""The web UI's sign-in is a server-side session, not the API token in a cookie.

Against a real ``loom server`` process (SQLite, auth on, the admin token it prints on first
start) and the fully wired app on SQLite and PostgreSQL: the cookie is a random secret that the
API refuses as a Bearer token and the database keeps only hashed; sign-out revokes it on the
server, so a copied cookie gets the sign-in page; signing in issues a new cookie and ends the
session of every cookie the browser sent (no session fixation); revoking the token ends its
sessions; idle and absolute expiry (on a frozen clock)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from linkloom.access import Role
from linkloom.testing import FrozenClock
from tests.acceptance.api.api_harness import Api, any_api, pg_database, sqlite_template
from tests.acceptance.web.web_client import browser, csrf_of
from tests.support.servers import free_port

__all__ = ["any_api", "pg_database", "sqlite_template"]

IDLE, LIFETIME = 600.0, 3600.0


# ---- a real `loom server` process --------------------------------------------------------------
@dataclass
class RealServer:
    url: str
    admin_token: str
    db: Path


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    home = tmp_path_factory.mktemp("sessions-server")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_HOME": str(home),
        "LOOM_SERVER__PORT": str(port),
        "LOOM_SERVER__AUTH": "true",
        "LOOM_LOG__FORMAT": "console",
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    log = home / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "linkloom", "server"], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        token = _wait_for_token(process, log, url)
        yield RealServer(url=url, admin_token=token, db=home / "loom.db")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_token(process: subprocess.Popen[bytes], log: Path, url: str) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        found = re.search(r"^\s+(loom_\S+)$", log.read_text(), re.MULTILINE)
        if found:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return found.group(1)
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise AssertionError(f"loom server did not start: {log.read_text()}")


@contextmanager
def sign_in(url: str, token: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in through the login form."""
    with httpx.Client(base_url=url, headers={"Origin": url}, follow_redirects=False) as client:
        response = client.post("/login", data={"token": token, "next": "/"})
        assert response.status_code == 303, response.text
        assert token not in response.text
        assert token not in str(response.headers)
        yield client


def create_token(server: RealServer, role: Role) -> tuple[str, str]:
    response = httpx.post(
        f"{server.url}/api/v1/tokens",
        json={"name": f"{role.value}-person", "role": role.value},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["secret"], response.json()["id"]


def test_the_cookie_is_no_token_and_the_api_refuses_it(real_server: RealServer) -> None:
    token, _ = create_token(real_server, Role.author)
    with sign_in(real_server.url, token) as client:
        cookie = client.cookies["loom_session"]
        assert cookie != token
        assert token not in cookie
        assert not cookie.startswith("loom_")
        page = client.get("/")
        assert page.status_code == 200
        assert "author-person" in page.text
        assert token not in page.text
        api = httpx.get(
            f"{real_server.url}/api/v1/flows", headers={"Authorization": f"Bearer {cookie}"}
        )
        assert api.status_code == 401, api.text
        as_cookie = httpx.get(f"{real_server.url}/api/v1/flows", cookies={"loom_session": cookie})
        assert as_cookie.status_code == 401  # the API reads no cookie at all
    engine = sa.create_engine(f"sqlite:///{real_server.db}")
    with engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM web_sessions"))]
    engine.dispose()
    assert stored, "the session is kept on the server"
    flat = " ".join(str(value) for row in stored for value in row)
    assert cookie not in flat
    assert token not in flat
    assert hashlib.sha256(cookie.encode()).hexdigest() in flat


def test_sign_out_revokes_the_session_so_a_copied_cookie_signs_in_again(
    real_server: RealServer,
) -> None:
    token, _ = create_token(real_server, Role.viewer)
    with sign_in(real_server.url, token) as client:
        cookie = client.cookies["loom_session"]
        csrf = csrf_of(client.get("/").text)
        out = client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
    with httpx.Client(base_url=real_server.url, cookies={"loom_session": cookie}) as thief:
        page = thief.get("/runs", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login")
        assert "Sign in" in thief.get("/runs", follow_redirects=True).text


def test_revoking_the_token_ends_its_sessions(real_server: RealServer) -> None:
    token, token_id = create_token(real_server, Role.reviewer)
    with sign_in(real_server.url, token) as client:
        assert client.get("/audit").status_code == 200
        revoked = httpx.delete(
            f"{real_server.url}/api/v1/tokens/{token_id}",
            headers={"Authorization": f"Bearer {real_server.admin_token}"},
        )
        assert revoked.status_code == 200, revoked.text
        page = client.get("/audit")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login")


def login_over(url: str, token: str, cookie: str) -> str:
    """Sign in through the login form from a browser that already sends ``cookie``; the new
    cookie value the server sets."""
    response = httpx.post(
        f"{url}/login",
        data={"token": token, "next": "/"},
        headers={"Origin": url, "Cookie": f"loom_session={cookie}"},
    )
    assert response.status_code == 303, response.text
    new = httpx.Cookies()
    new.extract_cookies(response)
    return str(new["loom_session"])


def signed_in_as(url: str, cookie: str) -> str | None:
    """The home page a browser sending ``cookie`` gets, or None when it is sent to sign in."""
    page = httpx.get(f"{url}/", headers={"Cookie": f"loom_session={cookie}"})
    if page.status_code == 303:
        assert page.headers["location"].startswith("/login")
        return None
    assert page.status_code == 200, page.text
    return page.text


def test_signing_in_again_issues_a_new_cookie_and_ends_the_old_session(
    real_server: RealServer,
) -> None:
    viewer, _ = create_token(real_server, Role.viewer)
    author, _ = create_token(real_server, Role.author)
    with sign_in(real_server.url, viewer) as client:
        old = client.cookies["loom_session"]
    assert "viewer-person" in (signed_in_as(real_server.url, old) or "")
    new = login_over(real_server.url, author, old)
    assert new != old
    assert "author-person" in (signed_in_as(real_server.url, new) or "")
    assert signed_in_as(real_server.url, old) is None, "the old cookie still signs in"


def test_a_cookie_planted_before_sign_in_never_becomes_the_victims_session(
    real_server: RealServer,
) -> None:
    """The attacker plants their own live session's cookie in the victim's browser and waits
    for the sign-in: afterwards the victim has a session the attacker does not know, and the
    planted one is over. (A value the server never issued was never a session at all.)"""
    attacker, _ = create_token(real_server, Role.viewer)
    victim, _ = create_token(real_server, Role.reviewer)
    with sign_in(real_server.url, attacker) as client:
        planted = client.cookies["loom_session"]
    cookie = login_over(real_server.url, victim, planted)
    assert cookie != planted
    assert "reviewer-person" in (signed_in_as(real_server.url, cookie) or "")
    assert signed_in_as(real_server.url, planted) is None, "the planted cookie outlived it"


# ---- the wired app on SQLite and PostgreSQL, on a frozen clock ---------------------------------
@pytest.fixture
def clocked(any_api: Api) -> Api:
    """The app (SQLite, then PostgreSQL) with 10-minute idle and 1-hour absolute limits, and a
    clock tests move."""
    any_api.services.settings.server.session_idle_seconds = IDLE
    any_api.services.settings.server.session_max_seconds = LIFETIME
    any_api.services.auth.clock = FrozenClock(any_api.services.runs.clock.now())
    return any_api


def clock_of(api: Api) -> FrozenClock:
    clock: FrozenClock = api.services.auth.clock
    return clock


async def signed_in(response: httpx.Response) -> bool:
    if response.status_code == 200:
        return True
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    return False


async def test_a_session_ends_after_the_idle_time_without_requests(clocked: Api) -> None:
    async with browser(clocked, Role.viewer) as client:
        clock_of(clocked).advance(IDLE - 5)
        assert await signed_in(await client.get("/runs"))  # activity keeps it alive
        clock_of(clocked).advance(IDLE - 5)
        assert await signed_in(await client.get("/runs"))
        clock_of(clocked).advance(IDLE + 1)
        assert not await signed_in(await client.get("/runs"))


async def test_a_session_ends_at_its_absolute_limit_however_active(clocked: Api) -> None:
    async with browser(clocked, Role.author) as client:
        elapsed = 0.0
        while elapsed + IDLE / 2 < LIFETIME:
            clock_of(clocked).advance(IDLE / 2)
            elapsed += IDLE / 2
            assert await signed_in(await client.get("/runs")), elapsed
        clock_of(clocked).advance(LIFETIME - elapsed + 1)
        assert not await signed_in(await client.get("/runs"))


async def test_a_sign_in_ends_every_session_cookie_the_browser_sent(clocked: Api) -> None:
    """Two ``loom_session`` cookies arrive when one was planted for a narrower path or a parent
    domain; signing in ends both, and signing out ends every one sent too."""
    async with browser(clocked, Role.viewer) as first, browser(clocked, Role.author) as second:
        cookies = [first.cookies["loom_session"], second.cookies["loom_session"]]
    sent = {"Cookie": "; ".join(f"loom_session={c}" for c in cookies)}
    async with browser(clocked) as client:
        response = await client.post(
            "/login", data={"token": clocked.tokens[Role.reviewer], "next": "/"}, headers=sent
        )
        assert response.status_code == 303, response.text
        fresh = response.cookies["loom_session"]
    assert fresh not in cookies
    async with browser(clocked) as client:
        for old in cookies:
            page = await client.get("/runs", headers={"Cookie": f"loom_session={old}"})
            assert not await signed_in(page), "a cookie sent with the sign-in outlived it"
        page = await client.get("/runs", headers={"Cookie": f"loom_session={fresh}"})
        assert await signed_in(page)
        home = await client.get("/", headers={"Cookie": f"loom_session={fresh}"})
        out = await client.post(
            "/logout",
            data={"csrf": csrf_of(home.text)},
            headers={"Cookie": f"loom_session=stale; loom_session={fresh}"},
        )
        assert out.status_code == 303
        page = await client.get("/runs", headers={"Cookie": f"loom_session={fresh}"})
        assert not await signed_in(page), "signing out left the session alive"


async def test_the_cookie_lives_as_long_as_the_session_and_only_on_this_site(clocked: Api) -> None:
    async with browser(clocked) as client:
        response = await client.post(
            "/login", data={"token": clocked.tokens[Role.viewer], "next": "/"}
        )
        cookie = response.headers["set-cookie"]
        assert f"Max-Age={int(LIFETIME)}" in cookie
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert clocked.tokens[Role.viewer] not in cookie


async def test_the_cookie_is_secure_when_the_public_url_is_https(clocked: Api) -> None:
    """Behind a TLS proxy the app sees http (uvicorn trusts X-Forwarded-Proto from 127.0.0.1
    only); the public URL says the browser is on https, so the cookie must not travel in clear."""
    clocked.app.state.services.settings.server.public_url = "https://loom.example.test"
    async with browser(clocked) as client:
        response = await client.post(
            "/login", data={"token": clocked.tokens[Role.viewer], "next": "/"}
        )
        assert "secure" in response.headers["set-cookie"].lower()


# ---- a real Chromium: nothing the browser keeps holds the token --------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_the_browser_keeps_no_token_in_cookies_storage_or_the_app_caches(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.web_harness import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e.web_harness import LoomServer as BrowserServer
    from tests.support.real import require

    require(os.path.exists(CHROMIUM), f"Chromium not found at {CHROMIUM}")
    server = BrowserServer.start(tmp_path_factory.mktemp("sessions-browser"))
    token = server.tokens[Role.author]
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = chromium.new_context(base_url=server.url)
            context.set_default_timeout(15_000)
            page = context.new_page()
            page.goto("/login")
            page.fill("#token", token)
            page.click("button:has-text('Sign in')")
            page.wait_for_url(f"{server.url}/")
            assert _until(page, "navigator.serviceWorker.controller !== null")
            for path in ("/", "/runs", "/flows", "/proposals"):
                page.goto(path)
            assert _until(page, KEPT_PAGES_JS), "the service worker kept no page"
            kept = page.evaluate(EVERYTHING_KEPT_JS)
            cookies = {c["name"]: c["value"] for c in context.cookies()}
            assert kept["documentCookie"] == ""  # HttpOnly: scripts see no session
            assert token not in cookies["loom_session"]
            for where, text in [*kept["caches"], ("storage", kept["storage"])]:
                assert token not in text, f"the token is in {where}"
            page.click("button:has-text('Sign out')")
            page.wait_for_url(f"{server.url}/login")
            assert _until(page, "caches.has('loom-pages').then((h) => !h)"), "pages kept"
            thief = chromium.new_context(base_url=server.url)
            thief.add_cookies(
                [{"name": "loom_session", "value": cookies["loom_session"], "url": server.url}]
            )
            stolen = thief.new_page()
            stolen.goto("/runs")
            assert "/login" in stolen.url
            chromium.close()
    finally:
        server.stop()


KEPT_PAGES_JS = "caches.open('loom-pages').then((c) => c.keys()).then((k) => k.length >= 2)"
EVERYTHING_KEPT_JS = """(async () => {
  const out = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      const response = await cache.match(request);
      const headers = [...response.headers].map((h) => h.join(": ")).join("\\n");
      out.push([name + " " + request.url, headers + "\\n" + (await response.text())]);
    }
  }
  const storage = JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage});
  return {caches: out, storage, documentCookie: document.cookie};
})()"""


def _until(page: object, script: str, within: float = 15.0) -> object:
    deadline = time.monotonic() + within
    while True:
        found = page.evaluate(script)  # type: ignore[attr-defined]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)

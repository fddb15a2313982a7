"""The installable app (PWA) in a real Chromium with a real profile, against a real server:
installed through Chromium's own web-app installer (DevTools ``PWA.install``) after it reports
no installability error, and launched (``PWA.launch``); the last runs read offline
(``context.set_offline(True)``) with "Offline, as of HH:MM" and actions disabled; back online,
an OS notification for a failing watched run shown through the service worker while the app is
open, read back with the service worker registration's ``getNotifications()``.

Screenshots at 1280 px: app-installed, app-offline, app-notifications (tests/artifacts/...).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from linkloom.access import Role
from tests.e2e.web_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    LoomServer,
    failing_flow,
)
from tests.support.real import require

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

NOTES_JS = """navigator.serviceWorker.ready
  .then((r) => r.getNotifications())
  .then((ns) => ns.map((n) => (
    {title: n.title, body: n.body, tag: n.tag, url: n.data && n.data.url})))"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoomServer]:
    require(
        os.path.exists(CHROMIUM), f"Chromium not found at {CHROMIUM}: apt-get install -y chromium"
    )
    running = LoomServer.start(tmp_path_factory.mktemp("web-app"))
    try:
        running.apply(failing_flow("http://127.0.0.1:9"))  # every run fails: nothing listens there
        yield running
    finally:
        running.stop()


@pytest.fixture
def profile(server: LoomServer, tmp_path: Path) -> Iterator[Any]:
    """A persistent Chromium profile (an incognito one cannot install apps)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
            base_url=server.url,
        )
        context.grant_permissions(["notifications"], origin=server.url)
        context.set_default_timeout(15_000)
        errors: list[str] = []
        context.on("weberror", lambda e: errors.append(str(e.error)))
        yield context
        context.close()
        assert not errors, f"script errors on the pages: {errors}"


def until(page: Any, script: str, *, within: float = 15.0) -> Any:
    """Poll ``script`` in the page until it gives something truthy (CSP forbids eval'd
    predicates, so no wait_for_function)."""
    deadline = time.monotonic() + within
    while True:
        found = page.evaluate(script)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-1280.png"))


def test_app_installs_reads_the_last_runs_offline_and_notifies_while_open(
    profile: Any, server: LoomServer
) -> None:
    from playwright.sync_api import expect

    earlier = server.trigger("nightly-export")
    assert server.wait_run(earlier)["status"] == "FAILED"

    page = profile.pages[0] if profile.pages else profile.new_page()
    page.goto("/login")
    page.fill("#token", server.tokens[Role.author])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{server.url}/")
    assert until(page, "navigator.serviceWorker.controller !== null"), "no service worker"

    # what to be told about: runs of nightly-export failing
    page.goto("/me/notifications")
    page.check("#event-run_failed")
    page.check("#watch-nightly-export")
    page.click("#prefs-form button[type=submit]")
    expect(page.locator("#prefs-saved")).to_be_visible()
    page.click("#allow-notifications")
    expect(page.locator("#permission-state")).to_contain_text("allowed")
    shoot(page, "app-notifications")

    # install: Chromium finds nothing missing, installs the app and opens it in its own window
    cdp = profile.new_cdp_session(page)
    assert cdp.send("Page.getInstallabilityErrors") == {"installabilityErrors": []}
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["errors"] == []
    assert manifest["url"] == f"{server.url}/manifest.webmanifest"
    cdp.send("PWA.install", {"manifestId": f"{server.url}/"})
    with profile.expect_page(timeout=30_000) as launched:
        cdp.send("PWA.launch", {"manifestId": f"{server.url}/"})
    app = launched.value
    assert app is not page
    app.set_viewport_size({"width": 1280, "height": 860})
    app.wait_for_load_state()
    # the installed app opened at its start URL (headless Chromium shows it in a tab: there is
    # no window system, so display-mode stays "browser" there)
    assert app.url == f"{server.url}/"
    expect(app.locator("#flows")).to_contain_text("nightly-export")
    shoot(app, "app-installed")

    # offline: the last runs stay readable, marked with when they were seen; actions are off
    app.goto("/runs")
    expect(app.locator(f"tr[data-run='{earlier}']")).to_be_visible()
    app.goto(f"/runs/{earlier}")
    app.goto("/flows/nightly-export")
    until(app, "caches.open('loom-pages').then((c) => c.keys()).then((k) => k.length >= 3)")
    profile.set_offline(True)
    app.goto("/runs")
    banner = app.locator("#offline-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(re.compile(r"Offline, as of \d\d:\d\d"))
    expect(app.locator(f"tr[data-run='{earlier}']")).to_be_visible()
    assert app.evaluate("navigator.onLine") is False
    shoot(app, "app-offline")
    app.goto(f"/runs/{earlier}")
    expect(app.locator("#run-status")).to_contain_text("failed")
    expect(app.locator("form[data-when='failed'] button").first).to_be_disabled()
    app.goto("/flows/nightly-export")
    expect(app.locator("button:has-text('Run nightly-export')")).to_be_disabled()
    app.goto("/dead-letters")  # never opened online: said so, no stale guess
    expect(app.locator("main")).to_contain_text("was not opened while the connection was up")

    # back online: fresh pages, actions back, and a failing watched run shows up at once
    profile.set_offline(False)
    app.goto("/")
    expect(banner).to_be_hidden()
    expect(app.locator("html")).to_have_attribute("data-notes-ready", "true")
    failed = server.trigger("nightly-export")
    assert server.wait_run(failed)["status"] == "FAILED"
    shown = until(app, f"({NOTES_JS}).then((ns) => ns.filter((n) => n.url === '/runs/{failed}'))")
    assert shown, app.evaluate(NOTES_JS)
    assert shown[0]["title"] == "Run failed: nightly-export"
    assert shown[0]["tag"] == f"run_failed:{failed}"
    assert f"Run {failed} of nightly-export" in shown[0]["body"]
    # the earlier failure happened before the user chose to be told: no notification for it
    assert not [n for n in app.evaluate(NOTES_JS) if n["url"] == f"/runs/{earlier}"]

"""The web UI in a real Chromium against a real server process and the real example backend.

A user signs in with a token, triggers daily-report from the form and watches it turn green
live (SSE, no reload) with a desktop notification at the end; opens a failed run and reads the
failing step's response in the drawer; a viewer is refused what needs a higher role.
Screenshots of every page, 1280 and 390 px wide, go to tests/artifacts/screenshots/.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.backend.app import create_app as create_backend
from examples.backend.server import RunningBackend, serve
from linkloom.access import Role
from tests.e2e.web_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    SIGNING_KEY,
    LoomServer,
    example_flow,
    failing_flow,
)
from tests.support.real import require

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class Gate:
    """Holds the example backend's send-email requests while a test keeps it closed."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()  # requests pass until a test closes the gate

    def middleware(self, app: Any) -> Any:
        import asyncio

        async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") == "http" and scope.get("path") == "/api/tasks/send-email":
                await asyncio.to_thread(self.open.wait, 20)
            await app(scope, receive, send)

        return wrapped


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def backend(gate: Gate) -> Iterator[RunningBackend]:
    app = create_backend(signing_key=SIGNING_KEY)
    wrapped = gate.middleware(app)
    with serve(app=wrapped) as running:  # type: ignore[arg-type]  # any ASGI app serves
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: RunningBackend
) -> Iterator[LoomServer]:
    require(
        os.path.exists(CHROMIUM), f"Chromium not found at {CHROMIUM}: apt-get install -y chromium"
    )
    running = LoomServer.start(tmp_path_factory.mktemp("web-e2e"))
    try:
        running.apply(example_flow("daily-report", backend.url))
        running.apply(failing_flow(backend.url))
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(server: LoomServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: LoomServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server.url)
    context.grant_permissions(["notifications"], origin=server.url)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def sign_in(page: Any, server: LoomServer, role: Role) -> None:
    page.goto("/")
    assert "/login" in page.url  # no session: the dashboard sends us to sign in
    page.fill("#token", server.tokens[role])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{server.url}/")


def shoot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Screenshots at 1280 and 390 px wide (the whole page, or what the viewport shows)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.screenshot(path=str(SCREENSHOTS / f"{name}-1280.png"), full_page=full_page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / f"{name}-390.png"), full_page=full_page)
    page.set_viewport_size(size)


def test_web_trigger_from_form_turns_green_live_and_notifies(
    page: Any, server: LoomServer, gate: Gate
) -> None:
    from playwright.sync_api import expect

    page.goto("/login")
    shoot(page, "login")
    sign_in(page, server, Role.author)
    row = page.locator("tr[data-flow='daily-report']")
    expect(row).to_be_visible()
    page.click("a:has-text('daily-report')")
    expect(page.locator("h1")).to_contain_text("Daily report")
    expect(page.locator(".dag.wide g.node[data-step='send_email']")).to_be_visible()

    # A bad value comes back as a 422 with the problem next to its field.
    page.fill("#input-count", "2.5")
    page.click("button:has-text('Run daily-report')")
    expect(page.locator("#trigger-problems")).to_contain_text("count")
    expect(page.locator("#input-count-problem")).to_be_visible()

    gate.open.clear()
    page.fill("#input-count", "7")
    page.click("button:has-text('Run daily-report')")
    page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[-1]
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    send = page.locator(".dag.wide g.node[data-step='send_email']")
    expect(send).to_have_class("node st-running", timeout=10_000)
    expect(page.locator(".dag.wide g.node[data-step='fetch_data']")).to_have_class(
        "node st-succeeded"
    )
    page.click("#watch")
    expect(page.locator("#watch")).to_have_attribute("aria-pressed", "true")
    shoot(page, "run-live")

    gate.open.set()  # the backend answers; the page turns green without a reload
    expect(send).to_have_class("node st-succeeded", timeout=10_000)
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator("html")).to_have_attribute("data-notified", f"{run_id}:SUCCEEDED")
    expect(page.locator("#log")).to_contain_text("Email sent to admin@example.com")
    expect(page.locator(".gantt-labels")).to_contain_text("send_email #1")
    assert server.wait_run(run_id)["inputs"]["count"] == 7
    shoot(page, "run-succeeded")

    page.goto("/flows/daily-report")
    expect(page.locator(".dag.wide g.node[data-step='process']")).to_have_class("node st-succeeded")
    shoot(page, "flow")


def test_web_dashboard_updates_live_and_notifies_when_a_watched_run_ends(
    page: Any, server: LoomServer, gate: Gate
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server, Role.author)
    gate.open.clear()
    try:
        run_id = server.trigger("daily-report", {"count": 3})
        page.goto(f"/runs/{run_id}")
        page.click("#watch")
        page.goto("/")
        running = page.locator(f"#active tr[data-run='{run_id}']")
        expect(running).to_contain_text("running")
        page.fill("#q", "nightly")  # the instant filter hides what does not match
        expect(page.locator("tr[data-flow='daily-report']")).to_be_hidden()
        page.fill("#q", "")
        shoot(page, "dashboard")
    finally:
        gate.open.set()
    expect(page.locator("html")).to_have_attribute(
        "data-notified", f"{run_id}:SUCCEEDED", timeout=10_000
    )
    expect(running).to_have_count(0)  # "running now" refreshed without a reload
    expect(page.locator("tr[data-flow='daily-report'] .badge")).to_have_text("succeeded")


def test_web_failed_run_shows_the_failing_response_in_the_drawer(
    page: Any, server: LoomServer
) -> None:
    from playwright.sync_api import expect

    run_id = server.trigger("nightly-export", {"error": "warehouse rejected row 17"})
    assert server.wait_run(run_id)["status"] == "FAILED"
    sign_in(page, server, Role.author)
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#run-status .badge")).to_have_text("failed")
    failing = page.locator(".dag.wide a.node-link[data-step='export']")
    expect(failing.locator("g.node")).to_have_class("node st-failed")
    failing.focus()
    page.keyboard.press("Enter")  # keyboard opens the drawer too
    drawer = page.locator("#drawer")
    expect(drawer).to_be_visible()
    expect(drawer.locator("#drawer-title")).to_contain_text("export")
    expect(drawer.locator("pre.response")).to_contain_text("warehouse rejected row 17")
    expect(drawer.locator("pre.request")).to_contain_text("Idempotency-Key")
    expect(page.locator("[data-close]")).to_be_focused()
    shoot(page, "run-failed-drawer", full_page=False)  # the drawer is fixed
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(failing).to_be_focused()  # focus returns to the step that opened the drawer
    expect(page.locator("form[data-when='failed'] button")).to_be_visible()

    page.goto("/dead-letters")
    expect(page.locator(f"tr:has(a[href^='/runs/{run_id}'])")).to_contain_text("export")
    shoot(page, "dead-letters")


def test_web_roles_and_audit(page: Any, server: LoomServer) -> None:
    from playwright.sync_api import expect

    sign_in(page, server, Role.viewer)
    page.goto("/flows/daily-report")
    page.keyboard.press("Tab")  # the first stop is the skip link, shown when focused
    expect(page.locator("a.skip")).to_be_focused()
    expect(page.locator("a.skip")).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
    expect(page.locator("#trigger-h + p")).to_contain_text("needs the author role")
    expect(page.locator("a:has-text('Audit log')")).to_have_count(0)
    response = page.goto("/audit")
    assert response is not None
    assert response.status == 403
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login")

    sign_in(page, server, Role.reviewer)
    page.goto("/audit")
    expect(page.locator("table.audit")).to_contain_text("run.trigger")
    shoot(page, "audit")
    page.goto("/proposals")
    shoot(page, "proposals")
    page.goto("/runs?trigger=manual")
    expect(page.locator("table.runs tbody tr[data-run]").first).to_be_visible()
    shoot(page, "runs")


def test_web_reviewer_reads_a_proposal_diff_and_approves_it(page: Any, server: LoomServer) -> None:
    from playwright.sync_api import expect

    pytest.importorskip("linkloom.api.routes.proposals", reason="the proposal API is not installed")
    run_id = server.trigger("daily-report", {"count": 9})  # a production run to replay
    assert server.wait_run(run_id)["status"] == "SUCCEEDED"
    proposed = copy.deepcopy(server.flows["daily-report"])
    proposed["steps"][1]["outputs"]["valid"] = "{{ output.valid * 2 }}"
    with server.api(Role.author) as client:
        opened = client.post(
            "/api/v1/proposals",
            json={"title": "Double the valid count", "specs": [proposed], "background": True},
        )
        assert opened.status_code == 201, opened.text
        proposal_id = opened.json()["id"]

    sign_in(page, server, Role.reviewer)
    page.click("nav a:has-text('Proposals')")
    page.click(f"tr[data-proposal='{proposal_id}'] a")
    status = page.locator("#proposal-status")
    for _ in range(60):  # the checks run in the background (sandbox: docker or process)
        if status.inner_text() != "validating" and status.inner_text() != "sandboxing":
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(status).to_have_text("ready for review")
    # The valid count changes in the case: the diff asks the reviewer to look, and says what.
    expect(page.locator("li[data-check='diff'] .badge")).to_have_text("attention")
    expect(page.locator("pre.unified .u-add")).to_contain_text("output.valid * 2")
    finding = page.locator(".result-diff details.finding-attention").first
    expect(finding).to_contain_text("process: outputs.valid doubled in")
    page.click(".result-diff details.cases > summary")  # the per-case tables, one click away
    changed = page.locator(".result-diff tr.change-changed[data-step='process']").first
    expect(changed.locator("td.production")).to_be_visible()
    expect(changed).to_contain_text("outputs.valid")
    shoot(page, "proposal")
    page.fill("#comment", "Doubling is what finance asked for.")
    page.click("button:has-text('Approve')")
    expect(status).to_have_text("approved")
    expect(page.locator(".comment")).to_contain_text("reviewer-user")
    expect(page.locator("button:has-text('Promote to production')")).to_be_visible()
    shoot(page, "proposal-approved")


def test_web_screenshots_were_written() -> None:
    """Every page's screenshots exist at both widths (a reviewer looks at them)."""
    names = [
        "login",
        "dashboard",
        "flow",
        "run-live",
        "run-succeeded",
        "run-failed-drawer",
        "dead-letters",
        "audit",
        "proposals",
        "runs",
    ]
    missing = [
        f"{n}-{w}.png"
        for n in names
        for w in (1280, 390)
        if not (Path(SCREENSHOTS) / f"{n}-{w}.png").exists()
    ]
    assert not missing

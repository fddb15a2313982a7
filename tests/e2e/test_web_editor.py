"""The visual flow editor in a real Chromium against a real server process, the real example
backend, a real flows repo and the process sandbox; the editor is the one ``scripts/build-web``
builds with npm from the committed lock file.

* An author builds a four-step flow with a fan-out from nothing (a step dragged from the
  palette, the others added from it, edges drawn by mouse), sees the server's validation error
  appear on the step and its field and disappear, has a cycle refused while drawing, edits on
  both the canvas and the YAML tab, saves it as a proposal; a reviewer approves and promotes it,
  and it runs.
* A flow written in the MBFlow shape opens converted (said so on the page); changing one step's
  URL in the form gives a proposal whose spec diff is exactly that line; the proposal is then
  revised from the editor.
* A viewer sees the editor read-only.

Screenshots at 1280 px go to tests/artifacts/screenshots/ (editor-*.png).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from examples.backend.app import create_app as create_backend
from examples.backend.server import RunningBackend, serve
from linkloom.access import Role
from tests.e2e.web_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    SIGNING_KEY,
    LoomServer,
    build_front_end,
)
from tests.support.plugins import install_example_plugin
from tests.support.real import require

# Long scenarios (a flow drawn, proposed, checked, reviewed, promoted and run): more time than
# the suite's 120 s per test when the machine is loaded.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def backend() -> Iterator[RunningBackend]:
    with serve(app=create_backend(signing_key=SIGNING_KEY)) as running:
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: RunningBackend
) -> Iterator[LoomServer]:
    import os

    require(
        os.path.exists(CHROMIUM), f"Chromium not found at {CHROMIUM}: apt-get install -y chromium"
    )
    build_front_end()
    install_example_plugin()  # its 'hash' step type must appear in the palette
    running = LoomServer.start(tmp_path_factory.mktemp("web-editor"))
    try:
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
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield pg
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def sign_in(page: Any, server: LoomServer, role: Role) -> None:
    page.context.clear_cookies()
    page.goto("/login")
    page.fill("#token", server.tokens[role])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{server.url}/")


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-1280.png"))


def node(page: Any, step_id: str) -> Any:
    return page.locator(f".react-flow__node[data-id='{step_id}']")


def settled_box(locator: Any) -> dict[str, float]:
    """The element's box once it stopped moving (after a layout or a fit-view animation)."""
    box = locator.bounding_box()
    for _ in range(40):
        locator.page.wait_for_timeout(100)
        again = locator.bounding_box()
        if again == box:
            return dict(box)
        box = again
    return dict(box)


def connect(page: Any, source: str, target: str, *, drawn: bool = True) -> None:
    """Draw an edge with the mouse, from source's bottom handle to target's top handle."""
    from playwright.sync_api import expect

    start = settled_box(node(page, source).locator(".react-flow__handle.source"))
    end = settled_box(node(page, target).locator(".react-flow__handle.target"))
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()
    if drawn:
        expect(page.locator(f".react-flow__edge[data-id='{source}->{target}']")).to_have_count(1)


def select(page: Any, step_id: str) -> None:
    node(page, step_id).locator(".step-head").click()
    from playwright.sync_api import expect

    expect(page.locator("#step-form")).to_have_attribute("data-step", step_id)


def wait_checks(page: Any) -> str:
    """Reload the proposal page until its checks have run; the status shown then."""
    status = page.locator("#proposal-status")
    for _ in range(120):
        text = status.inner_text()
        if text not in ("open", "validating", "sandboxing"):
            return str(text)
        page.wait_for_timeout(500)
        page.reload()
    raise AssertionError(f"the proposal's checks did not finish: {status.inner_text()}")


def test_editor_builds_a_fan_out_flow_from_nothing_that_goes_to_production(
    page: Any, server: LoomServer, backend: RunningBackend
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server, Role.author)
    page.click("#new-flow")
    page.wait_for_url("**/editor/new")
    expect(page.locator(".react-flow__pane")).to_be_visible()
    expect(page.locator("[data-step-type='hash']")).to_contain_text("plugin")
    page.fill("#flow-id", "fan-demo")
    page.fill("#flow-name", "Fan-out demo")

    page.drag_and_drop(
        "[data-step-type='http']", ".react-flow__pane", target_position={"x": 260, "y": 80}
    )
    expect(node(page, "http")).to_be_visible()
    # the server's validator: url is required for an http step; the error is on the step and
    # on the field, and the save button waits for it to be fixed
    expect(node(page, "http").locator(".step-node")).to_have_class(re.compile("has-errors"))
    expect(page.locator("#field-url-problems")).to_contain_text("url")
    expect(page.locator("#field-url")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#save")).to_be_disabled()
    shoot(page, "editor-validation-error")
    page.fill("#field-id", "fetch")
    page.keyboard.press("Enter")
    expect(node(page, "fetch")).to_be_visible()
    page.fill("#field-url", f"{backend.url}/api/tasks/fetch-data")
    expect(page.locator("#validation-status")).to_have_text("valid")
    expect(node(page, "fetch").locator(".step-node")).not_to_have_class(re.compile("has-errors"))
    expect(page.locator("#field-url-problems")).to_have_count(0)

    for step_id, task in (("left", "process"), ("right", "process"), ("join", "send-email")):
        page.click("[data-step-type='http']")
        page.fill("#field-id", step_id)
        page.keyboard.press("Enter")
        expect(page.locator("#step-form")).to_have_attribute("data-step", step_id)
        page.fill("#field-url", f"{backend.url}/api/tasks/{task}")
    page.click("#tidy")
    for source, target in (("fetch", "left"), ("fetch", "right"), ("left", "join")):
        connect(page, source, target)
    page.click("#tidy")
    connect(page, "right", "join")
    edges = page.locator(".react-flow__edge")
    expect(edges).to_have_count(4)

    connect(page, "join", "fetch", drawn=False)  # would close fetch → left → join → fetch
    expect(page.locator("#editor-message")).to_contain_text("would make a cycle")
    expect(edges).to_have_count(4)

    # completion of template references: upstream outputs, inputs, secrets
    select(page, "join")
    when = page.locator("#field-when")
    when.click()
    when.press_sequentially("{{ steps.l")
    expect(page.get_by_role("option", name="steps.left.output")).to_be_visible()
    expect(page.get_by_role("option", name="steps.fetch.output")).to_have_count(0)  # not 'l…'
    page.keyboard.press("Enter")
    expect(when).to_have_value("{{ steps.left.output }}")
    when.fill("")

    # copy, paste, delete, undo
    page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})
    select(page, "join")
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    expect(node(page, "join_copy")).to_be_visible()
    page.keyboard.press("Delete")
    expect(node(page, "join_copy")).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(node(page, "join_copy")).to_be_visible()
    page.keyboard.press("Control+z")
    expect(node(page, "join_copy")).to_have_count(0)
    expect(edges).to_have_count(4)

    # the YAML tab shows the spec the canvas makes, and edits there reach the canvas
    page.click("#tab-yaml")
    yaml_box = page.locator("#yaml-text")
    expect(yaml_box).to_have_value(re.compile(r"depends_on: \[left, right\]"))
    text = yaml_box.input_value()
    yaml_box.fill(text.replace("name: Fan-out demo", "name: Fan-out demo  # drawn on the canvas"))
    page.click("#tab-canvas")
    page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})
    expect(page.locator("#flow-name")).to_have_value("Fan-out demo")
    page.click("#tab-yaml")
    expect(yaml_box).to_have_value(re.compile("# drawn on the canvas"))  # the comment is kept
    saved = yaml.safe_load(yaml_box.input_value())
    page.click("#tab-canvas")
    expect(page.locator("#validation-status")).to_have_text("valid")
    page.click("#tidy")
    page.wait_for_timeout(400)
    shoot(page, "editor-new-flow")

    assert [s["id"] for s in saved["steps"]] == ["fetch", "left", "right", "join"]
    assert saved["steps"][3]["depends_on"] == ["left", "right"]
    assert "when" not in saved["steps"][3]

    page.click("#save")
    page.fill("#save-title-input", "Fan-out demo")
    page.fill("#save-description", "Drawn in the visual editor")
    page.click("#save-confirm")
    page.wait_for_url("**/proposals/*")
    proposal_url = page.url
    assert wait_checks(page) == "ready for review"
    expect(page.locator("li[data-check='validate'] .badge")).to_have_text("passed")
    expect(page.locator("pre.unified")).to_contain_text("depends_on: [left, right]")
    expect(page.locator("#results-h")).to_be_visible()
    shoot(page, "editor-proposal")

    sign_in(page, server, Role.reviewer)
    page.goto(proposal_url)
    page.click("button:has-text('Approve')")
    expect(page.locator("#proposal-status")).to_have_text("approved")
    page.click("button:has-text('Promote to production')")
    expect(page.locator("#proposal-status")).to_have_text("promoted")

    page.goto("/flows/fan-demo")
    expect(page.locator(".dag.wide g.node[data-step='join']")).to_be_visible()
    page.click("button:has-text('Run fan-demo')")
    page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[-1]
    assert server.wait_run(run_id)["status"] == "SUCCEEDED"
    expect(page.locator("#run-status .badge")).to_have_text("succeeded", timeout=15_000)


MBFLOW = """\
# Users: an MBFlow workflow kept in its own shape
workflow:
  id: mb-users
  name: Users
  nodes:
    - id: fetch
      name: Fetch the users
      type: HTTP
      config: {{url: "{url}/api/tasks/fetch-data", method: POST}}
    - id: shape
      type: HTTP
      config: {{url: "{url}/api/tasks/process", method: POST}}
    - id: notify
      type: HTTP
      config: {{url: "{url}/api/tasks/send-email", method: POST}}
  edges:
    - {{source: fetch, target: shape, type: DIRECT}}
    - {{source: shape, target: notify, type: DIRECT}}
"""


def test_editor_opens_a_seed_shape_and_one_url_change_is_one_line_of_spec_diff(
    page: Any, server: LoomServer, backend: RunningBackend
) -> None:
    from playwright.sync_api import expect

    with server.api(Role.author) as author:
        opened = author.post(
            "/api/v1/proposals",
            json={
                "title": "Add the MBFlow users flow",
                "files": {"flows/mb-users/flow.yaml": MBFLOW.format(url=backend.url)},
            },
        )
        assert opened.status_code == 201, opened.text
        assert opened.json()["status"] == "ready-for-review", opened.json()
    with server.api(Role.reviewer) as reviewer:
        pid = opened.json()["id"]
        assert reviewer.post(f"/api/v1/proposals/{pid}/approve").status_code == 200
        promoted = reviewer.post(f"/api/v1/proposals/{pid}/promote")
        assert promoted.status_code == 200, promoted.text
    assert server.wait_run(server.trigger("mb-users"))["status"] == "SUCCEEDED"

    sign_in(page, server, Role.author)
    page.goto("/flows/mb-users")
    page.click("#edit-flow")
    page.wait_for_url("**/flows/mb-users/edit")
    expect(page.locator("#shape-note")).to_contain_text("MBFlow")
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    select(page, "notify")
    new_url = f"{backend.url}/api/tasks/send-email?copy=ops"
    page.fill("#field-url", new_url)
    expect(page.locator("#validation-status")).to_have_text("valid")
    shoot(page, "editor-seed-shape")
    page.click("#save")
    page.fill("#save-title-input", "Copy ops on the users email")
    page.click("#save-confirm")
    page.wait_for_url("**/proposals/*")
    wait_checks(page)
    diff = page.locator("pre.unified[aria-label='spec diff of mb-users']")
    removed = diff.locator(".u-del")
    added = diff.locator(".u-add")
    expect(removed).to_have_count(1)
    expect(added).to_have_count(1)
    expect(removed).to_contain_text(f"url: {backend.url}/api/tasks/send-email")
    expect(added).to_have_text(f"+    url: {new_url}")

    # the proposal's Revise button leads to the editor, which saves a new revision
    page.click("#revise")
    page.click("a:has-text('Open mb-users in the visual editor')")
    page.wait_for_url("**/edit?flow=mb-users")
    expect(page.locator("#revision-note")).to_contain_text("revision 2")
    select(page, "notify")
    expect(page.locator("#field-url")).to_have_value(new_url)  # the branch's text
    page.fill("#field-name", "Tell ops")
    expect(page.locator("#validation-status")).to_have_text("valid")
    page.click("#save")
    page.fill("#save-description", "Name the notify step")
    page.click("#save-confirm")
    page.wait_for_url("**/proposals/*")
    wait_checks(page)
    expect(page.locator(".facts")).to_contain_text(re.compile(r"Revision\s*2 "))
    expect(page.locator("pre.unified")).to_contain_text("name: Tell ops")


def test_editor_is_read_only_without_the_author_role(page: Any, server: LoomServer) -> None:
    from playwright.sync_api import expect

    with server.api(Role.admin) as admin:
        spec = {
            "id": "viewer-demo",
            "steps": [
                {"id": "a", "type": "http", "url": "http://127.0.0.1:9/a"},
                {"id": "b", "type": "transform", "depends_on": ["a"], "template": {"x": 1}},
            ],
        }
        assert admin.put("/api/v1/flows/viewer-demo", json={"spec": spec}).status_code == 200
    sign_in(page, server, Role.viewer)
    page.goto("/flows/viewer-demo")
    expect(page.locator("#edit-flow")).to_contain_text("read-only")
    page.click("#edit-flow")
    expect(page.locator("#read-only-note")).to_be_visible()
    expect(page.locator(".react-flow__edge")).to_have_count(1)
    expect(page.locator("[data-step-type]")).to_have_count(0)
    expect(page.locator("#save")).to_have_count(0)
    select(page, "a")
    expect(page.locator("#field-url")).to_be_disabled()
    page.keyboard.press("Delete")
    expect(node(page, "a")).to_be_visible()  # nothing is deleted
    shoot(page, "editor-read-only")
    refused = page.request.post(
        "/editor/save",
        data={"text": "id: x\nsteps: []\n", "title": "sneaky"},
        headers={"X-CSRF-Token": "nope", "Origin": server.url},
    )
    assert refused.status == 403

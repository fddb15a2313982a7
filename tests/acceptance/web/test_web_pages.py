"""The web UI's pages on the fully wired app (httpx over ASGI): sessions, roles, CSRF, the
trigger form, the run page and its live stream, dead letters, audit, escaping."""

from __future__ import annotations

import json
from typing import Any

from linkloom.access import Role
from tests.acceptance.api.api_harness import Api, flow_spec
from tests.acceptance.web.web_client import browser, csrf_of


async def apply(api: Api, spec: dict[str, Any]) -> None:
    async with api.client(Role.admin) as client:
        response = await client.put(f"/api/v1/flows/{spec['id']}", json={"spec": spec})
        assert response.status_code == 200, response.text


async def test_web_pages_redirect_to_login_without_a_session(api: Api) -> None:
    async with browser(api) as client:
        response = await client.get("/flows/report?x=1")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/flows/report%3Fx%3D1"
        login = await client.get("/login")
        assert login.status_code == 200
        assert 'name="token"' in login.text


async def test_web_login_sets_a_strict_httponly_cookie_and_rejects_bad_tokens(api: Api) -> None:
    async with browser(api) as client:
        bad = await client.post("/login", data={"token": "loom_nope", "next": "/"})
        assert bad.status_code == 401
        assert "unknown or revoked" in bad.text
        good = await client.post(
            "/login", data={"token": api.tokens[Role.viewer], "next": "//evil.test/x"}
        )
        assert good.status_code == 303
        assert good.headers["location"] == "/"  # never redirects off-site
        cookie = good.headers["set-cookie"]
        assert "loom_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        page = await client.get("/")
        assert page.status_code == 200
        assert "viewer-user" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")


async def test_web_posts_need_the_csrf_token_and_a_same_origin(api: Api) -> None:
    await apply(api, flow_spec())
    async with browser(api, Role.author) as client:
        page = await client.get("/flows/report")
        token = csrf_of(page.text)
        missing = await client.post("/flows/report/trigger", data={"input.to": "a@b.c"})
        assert missing.status_code == 403
        assert "reload the page" in missing.text
        foreign = await client.post(
            "/flows/report/trigger",
            data={"input.to": "a@b.c", "csrf": token},
            headers={"Origin": "https://evil.test"},
        )
        assert foreign.status_code == 403
    runs = await api.services.runs.list_runs()
    assert runs.items == ()


async def test_web_trigger_form_starts_a_run_and_shows_422_problems_inline(api: Api) -> None:
    await apply(api, flow_spec())
    async with browser(api, Role.author) as client:
        page = await client.get("/flows/report")
        assert 'id="input-count"' in page.text
        assert 'type="number"' in page.text
        token = csrf_of(page.text)
        bad = await client.post("/flows/report/trigger", data={"input.count": "x", "csrf": token})
        assert bad.status_code == 422
        assert 'id="trigger-problems"' in bad.text
        assert "missing required input &#39;to&#39;" in bad.text
        assert 'id="input-count-problem"' in bad.text  # next to its field
        assert 'value="x"' in bad.text  # what the user typed is kept
        ok = await client.post(
            "/flows/report/trigger", data={"input.count": "2", "input.to": "a@b.c", "csrf": token}
        )
        assert ok.status_code == 303
        run_id = ok.headers["location"].rsplit("/", 1)[-1]
    run = await api.wait_run(run_id)
    assert run.inputs == {"count": 2, "to": "a@b.c"}
    assert run.created_by == "author-user"
    entries, _ = await api.services.audit.list(_filter(action="run.trigger"), limit=10)
    assert [(e.actor, e.object_id) for e in entries] == [("author-user", run_id)]


def _filter(**kw: Any) -> Any:
    from linkloom.access import AuditFilter

    return AuditFilter(**kw)


async def test_web_viewer_cannot_trigger_or_read_the_audit_log(api: Api) -> None:
    await apply(api, flow_spec())
    async with browser(api, Role.viewer) as client:
        page = await client.get("/flows/report")
        assert "Triggering needs the author role" in page.text
        token = csrf_of(page.text)
        refused = await client.post(
            "/flows/report/trigger", data={"input.to": "a@b.c", "csrf": token}
        )
        assert refused.status_code == 403
        assert "needs the author role" in refused.text
        assert (await client.get("/audit")).status_code == 403
    async with browser(api, Role.reviewer) as client:
        assert (await client.get("/audit")).status_code == 200


async def test_web_run_page_stream_and_drawer_show_a_failed_step(api: Api) -> None:
    api.backend.fail.add("send")
    await apply(api, flow_spec())
    run = await api.services.runs.trigger("report", inputs={"to": "a@b.c"})
    await api.wait_run(run.id)
    async with browser(api, Role.viewer) as client:
        page = await client.get(f"/runs/{run.id}")
        assert page.status_code == 200
        assert 'class="node st-failed" data-step="send"' in page.text
        assert 'class="node st-succeeded" data-step="fetch"' in page.text
        assert "send #1" in page.text  # the Gantt chart lists the attempt
        drawer = await client.get(f"/runs/{run.id}/steps/send")
        assert "/send is broken" in drawer.text  # the backend's response body
        assert "Idempotency-Key" in drawer.text  # the request headers
        assert "X-Loom-Signature&#34;: &#34;***" in drawer.text  # redacted
        live = await client.get(f"/runs/{run.id}/live")
        events = _sse(live.text)
        kinds = [kind for kind, _ in events]
        assert kinds[-1] == "end"
        state = next(json.loads(data) for kind, data in events if kind == "state")
        assert state == {
            "run": "FAILED",
            "steps": {"fetch": "succeeded", "process": "succeeded", "send": "failed"},
            "items": {},
        }
        assert any("send failed" in data for kind, data in events if kind == "log")


def _sse(text: str) -> list[tuple[str, str]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], lines.get("data", "")))
    return out


async def test_web_redrive_from_the_dead_letters_page(api: Api) -> None:
    api.backend.fail.add("send")
    await apply(api, flow_spec())
    run = await api.services.runs.trigger("report", inputs={"to": "a@b.c"})
    await api.wait_run(run.id)
    [letter] = await api.services.runs.list_dead_letters()
    api.backend.fail.clear()
    async with browser(api, Role.author) as client:
        page = await client.get("/dead-letters")
        assert f'value="{letter.id}"' in page.text
        response = await client.post(
            "/dead-letters/redrive",
            data={"id": letter.id, "on": "failed_version", "csrf": csrf_of(page.text)},
        )
        assert response.status_code == 303
        new_run = response.headers["location"].rsplit("/", 1)[-1]
    assert (await api.wait_run(new_run)).status.value == "SUCCEEDED"
    assert api.backend.calls.count("/fetch") == 1  # the succeeded steps were kept


async def test_web_pages_escape_what_flows_and_backends_write(api: Api) -> None:
    spec = flow_spec("xss", name="<script>alert(1)</script>")
    spec["steps"][0]["id"] = "fetch"
    await apply(api, spec)
    run = await api.services.runs.trigger("xss", inputs={"to": "<img src=x onerror=alert(1)>"})
    await api.wait_run(run.id)
    async with browser(api, Role.viewer) as client:
        for path in ("/", "/flows/xss", f"/runs/{run.id}"):
            html = (await client.get(path)).text
            assert "<script>alert" not in html
            assert "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (await client.get("/flows/xss")).text


async def test_web_dashboard_filters_by_text_status_and_tag(api: Api) -> None:
    await apply(api, flow_spec("alpha"))
    await apply(api, flow_spec("beta", tags=["billing"]))
    run = await api.services.runs.trigger("alpha", inputs={"to": "a@b.c"})
    await api.wait_run(run.id)
    async with browser(api, Role.viewer) as client:
        both = (await client.get("/")).text
        assert 'data-flow="alpha"' in both
        assert 'data-flow="beta"' in both
        assert "100%" in both  # alpha's success rate
        only_beta = (await client.get("/?tag=billing")).text
        assert 'data-flow="alpha"' not in only_beta
        assert 'data-flow="beta"' in only_beta
        succeeded = (await client.get("/?status=SUCCEEDED")).text
        assert 'data-flow="alpha"' in succeeded
        assert 'data-flow="beta"' not in succeeded
        never = (await client.get("/?status=NEVER&q=bet")).text
        assert 'data-flow="beta"' in never
        assert 'data-flow="alpha"' not in never


async def test_web_cancel_and_retry_buttons(api: Api) -> None:
    spec = flow_spec()
    spec["steps"][2]["url"] = "http://backend.test/async"
    spec["steps"][2]["mode"] = "async"
    await apply(api, spec)
    run = await api.services.runs.trigger("report", inputs={"to": "a@b.c"})
    await api.next_callback()  # the last step waits for its callback: the run is running
    async with browser(api, Role.author) as client:
        page = await client.get(f"/runs/{run.id}")
        assert 'class="node st-running" data-step="send"' in page.text
        assert 'data-when="active">' in page.text  # the cancel form is shown
        token = csrf_of(page.text)
        cancelled = await client.post(f"/runs/{run.id}/cancel", data={"csrf": token})
        assert cancelled.status_code == 303
        assert (await api.services.runs.get_run(run.id)).status.value == "CANCELLED"
        page = await client.get(f"/runs/{run.id}")
        assert 'class="node st-cancelled" data-step="send"' in page.text
        again = await client.post(f"/runs/{run.id}/cancel", data={"csrf": token})
        assert again.status_code == 409  # an error page, not a crash
        retried = await client.post(f"/runs/{run.id}/retry", data={"csrf": token})
        assert retried.status_code == 303
    assert (await api.services.runs.get_run(run.id)).status.value in ("PENDING", "RUNNING")
    entries, _ = await api.services.audit.list(_filter(object_id=run.id), limit=10)
    assert [e.action for e in entries] == ["run.retry", "run.cancel"]


async def test_web_flow_page_diffs_two_versions_side_by_side(api: Api) -> None:
    await apply(api, flow_spec())
    changed = flow_spec()
    changed["steps"][1]["url"] = "http://backend.test/process-v2"
    await apply(api, changed)
    async with browser(api, Role.viewer) as client:
        page = await client.get("/flows/report")
        assert "Spec diff v1 → v2" in page.text
        assert 'class="diff"' in page.text
        assert "-v2</span>" in page.text  # the changed part of the line is marked
        assert 'href="/flows/report?a=1&amp;b=2#diff-h"' in page.text
        same = await client.get("/flows/report?a=2&b=2")
        assert "Spec diff" not in same.text


async def test_web_without_auth_everyone_is_the_anonymous_admin(api: Api) -> None:
    api.services.auth.enabled = False
    try:
        async with browser(api) as client:
            page = await client.get("/")
            assert page.status_code == 200
            assert "anonymous" in page.text
            assert "Sign out" not in page.text
            assert (await client.get("/login")).headers["location"] == "/"
    finally:
        api.services.auth.enabled = True


async def test_web_bad_query_and_unknown_ids_are_html_error_pages(api: Api) -> None:
    async with browser(api, Role.viewer) as client:
        missing = await client.get("/runs/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert "not found" in missing.text
        bad = await client.get("/flows/x?a=one")
        assert bad.status_code == 422
        assert "invalid request" in bad.text


async def test_web_fan_out_step_shows_its_item_progress(api: Api) -> None:
    spec = flow_spec("fan")
    spec["steps"][1]["for_each"] = [1, 2, 3]
    await apply(api, spec)
    run = await api.services.runs.trigger("fan", inputs={"to": "a@b.c"})
    assert (await api.wait_run(run.id)).status.value == "SUCCEEDED"
    async with browser(api, Role.viewer) as client:
        page = await client.get(f"/runs/{run.id}")
        assert '<tspan class="state">succeeded 3/3</tspan> · http · for each' in page.text
        assert "process[2]" in page.text  # each item in the step list


async def test_web_form_says_a_whole_number_is_wanted_not_a_python_type(api: Api) -> None:
    await apply(api, flow_spec())
    async with browser(api, Role.author) as client:
        token = csrf_of((await client.get("/flows/report")).text)
        bad = await client.post(
            "/flows/report/trigger",
            data={"input.count": "2.5", "input.to": "a@b.c", "csrf": token},
        )
        assert bad.status_code == 422
        assert "must be a whole number" in bad.text
        assert "got str" not in bad.text


async def test_web_dashboard_running_now_tells_no_runs_from_none_running(api: Api) -> None:
    await apply(api, flow_spec())
    async with browser(api, Role.author) as client:
        before = await client.get("/")
        assert "No runs yet." in before.text
        async with api.client(Role.author) as rest:
            created = await rest.post("/api/v1/flows/report/runs", json={"inputs": {"to": "a@b"}})
        await api.wait_run(created.json()["id"])
        after = await client.get("/")
        assert "Nothing is running or waiting to run." in after.text
        assert "No runs yet." not in after.text


async def test_web_serves_a_favicon_where_browsers_ask_for_it(api: Api) -> None:
    async with browser(api) as client:
        icon = await client.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.content.startswith(b"<svg")
        login = await client.get("/login")
        assert 'rel="icon" href="/static/favicon.svg"' in login.text
        assert "loom config get token --reveal" in login.text

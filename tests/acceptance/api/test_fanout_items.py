"""A fan-out's items are read a page at a time: the API pages them by index with a cursor, the
run page lists the first few and links to the rest, the items page pages on, and the timeline
draws a bounded number of bars. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from linkloom.access import Role
from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.records import Attempt, Run
from linkloom.web import views
from tests.acceptance.api.api_harness import Api
from tests.acceptance.web.web_client import browser

ITEMS = 130


def spec(flow_id: str) -> dict[str, object]:
    return {
        "id": flow_id,
        "steps": [
            {"id": "prep", "type": "transform", "template": 1},
            {
                "id": "each",
                "type": "transform",
                "depends_on": ["prep"],
                "for_each": f"{{{{ range({ITEMS}) | list }}}}",
                "template": "{{ item * 10 }}",
            },
            {
                "id": "total",
                "type": "transform",
                "depends_on": ["each"],
                "template": "{{ steps.each.output | sum }}",
            },
        ],
    }


async def test_fanout_items_page_through_the_api_and_the_web_pages(any_api: Api) -> None:
    flow_id = f"fan-{uuid.uuid4().hex[:6]}"
    async with any_api.client(Role.admin) as admin:
        applied = await admin.put(f"/api/v1/flows/{flow_id}", json={"spec": spec(flow_id)})
        assert applied.status_code == 200, applied.text
        started = await admin.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": {}})
        run_id = started.json()["id"]
        done = await any_api.wait_run(run_id, within=120)
        assert done.status.value == "SUCCEEDED"

        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, object] = {"limit": 50}
            if cursor:
                params["cursor"] = cursor
            page = await admin.get(f"/api/v1/runs/{run_id}/steps/each/items", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            pages += 1
            seen.extend(item["index"] for item in body["items"])
            assert all(item["output"] == item["index"] * 10 for item in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == list(range(ITEMS))
        bad = await admin.get(f"/api/v1/runs/{run_id}/steps/each/items", params={"cursor": "x"})
        assert bad.status_code == 422
        missing = await admin.get("/api/v1/runs/no-such-run/steps/each/items")
        assert missing.status_code == 404
        none = await admin.get(f"/api/v1/runs/{run_id}/steps/prep/items")
        assert none.json() == {"items": [], "next_cursor": None}

    async with browser(any_api, Role.viewer) as client:
        run_page = await client.get(f"/runs/{run_id}")
        assert run_page.status_code == 200
        assert "each[19]</a>" in run_page.text  # the step list: the first 20 items
        assert "each[20]</a>" not in run_page.text
        more = f"/runs/{run_id}/items/each?after=19"
        assert f'href="{more}"' in run_page.text
        assert f"{ITEMS - 20} more items of each" in run_page.text
        items = await client.get(more)
        assert items.status_code == 200
        assert "<td>each[20]</td>" in items.text
        assert "<td>each[119]</td>" in items.text
        assert "each[120]" not in items.text
        last = await client.get(f"/runs/{run_id}/items/each?after=119")
        assert "<td>each[129]</td>" in last.text
        assert 'rel="next"' not in last.text


def test_the_timeline_draws_a_bounded_number_of_bars() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    run = Run(id="r", flow_id="f", version=1, status=RunStatus.SUCCEEDED, trigger="manual",
              created_at=t0, started_at=t0)  # fmt: skip
    attempts = [
        Attempt(
            id=f"a{i}",
            step_run_id=f"s{i}",
            run_id="r",
            step_id="each",
            item_index=i,
            number=1,
            status=StepStatus.SUCCEEDED,
            started_at=t0 + timedelta(milliseconds=i),
            finished_at=t0 + timedelta(milliseconds=i + 5),
        )
        for i in range(1000)
    ]
    chart = views.timeline(run, attempts, [], now=t0 + timedelta(seconds=5))
    assert len(chart.bars) == views.TIMELINE_BARS
    assert chart.hidden == 1000 - views.TIMELINE_BARS
    assert chart.bars[0].label == "each[0] #1"

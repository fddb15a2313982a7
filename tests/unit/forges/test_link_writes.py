"""The report loop and delivery handling write the same pull request link; neither undoes the
other's write (the lost update a slow forge call made possible)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from linkloom.forges import report
from linkloom.forges.memory import InMemoryForgeStore
from linkloom.forges.models import ForgeKind, PullLink
from linkloom.forges.service import ForgeConfig, ForgeService
from linkloom.testing import FrozenClock

OLD, NEW = "a" * 40, "b" * 40


class SlowForge:
    """Holds the comment call until released, as a slow forge API does."""

    kind = ForgeKind.GITHUB

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def upsert_comment(self, **_: Any) -> str:
        self.entered.set()
        await self.release.wait()
        return "c-1"

    async def set_status(self, **_: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Sync:
    attribute = None


class Service(ForgeService):
    """The service with a fixed report (no proposal service needed)."""

    async def compose(self, link: PullLink) -> report.Report:
        return report.Report(state="pending", description="d", url="http://loom", comment="c")


async def test_a_report_finishing_after_a_new_head_keeps_the_new_head() -> None:
    store = InMemoryForgeStore()
    clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    forge = SlowForge()
    service = Service(
        config=ForgeConfig(kind=ForgeKind.GITHUB, repo="a/b", webhook_secret="s",
                           public_url="http://loom"),
        store=store, proposals=None, sync=Sync(), clock=clock, client=forge,  # type: ignore[arg-type]
    )  # fmt: skip
    link = PullLink(
        forge=ForgeKind.GITHUB, repo="a/b", number=1, url="u", title="t", author="x",
        head_sha=OLD, head_ref="f", base_ref="main", proposal_id="p1", created_at=clock.now(),
    )  # fmt: skip
    await store.save_link(link)

    reporting = asyncio.create_task(service.report(link))
    await forge.entered.wait()  # the report is half-way, holding the old row
    await service._save(link, head_sha=NEW)  # a delivery: the pull request has a new head
    forge.release.set()
    assert await reporting
    stored = await store.get_link(ForgeKind.GITHUB, "a/b", 1)
    assert stored is not None
    assert stored.head_sha == NEW  # the delivery's write survived the report's
    assert stored.comment_id == "c-1"  # and the report's survived too
    assert stored.report.sent

    await service._save(stored, head_sha=OLD)  # a later delivery keeps the report's fields
    again = await store.get_link(ForgeKind.GITHUB, "a/b", 1)
    assert again is not None
    assert again.comment_id == "c-1"

"""``Loom``: wired services with notifications, a one-step flow against a real task backend,
and helpers to run it and wait for deliveries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from linkloom.engine.records import Run
from linkloom.flows.spec import FlowSpec
from linkloom.notifications.models import ChannelKind, Delivery, DeliveryStatus, EventKind
from linkloom.notifications.service import NotificationService
from linkloom.wiring import Services
from tests.support.notify_receivers import TaskBackend

FLOW = "nightly-sync"


@dataclass
class Loom:
    services: Services
    backend: TaskBackend

    @property
    def notify(self) -> NotificationService:
        assert self.services.notifications is not None
        return self.services.notifications  # type: ignore[no-any-return]

    async def apply_flow(self, flow_id: str = FLOW) -> None:
        spec = {"id": flow_id, "steps": [{"id": "sync", "type": "http", "url": self.backend.url}]}
        await self.services.runs.apply_flow(FlowSpec.model_validate(spec))

    async def run(self, *, fail: bool, flow_id: str = FLOW) -> Run:
        self.backend.fail = fail
        run = await self.services.runs.trigger(flow_id, inputs={})
        async with asyncio.timeout(10):
            done = await self.services.runs.wait(run.id)
        await self.settle()
        return done

    async def settle(self) -> None:
        """Wait until the notification intake has admitted every finished run."""
        async with asyncio.timeout(10):
            await self.notify.drain()

    async def channels(self, *, webhook: str, smtp_port: int | None = None) -> list[str]:
        made = [
            await self.notify.create_channel(
                name="ops-hook",
                kind=ChannelKind.WEBHOOK,
                config={"url": f"{webhook}/hook"},
                secrets={"secret": "hook-secret-0123456789"},
            ),
            await self.notify.create_channel(
                name="ops-slack",
                kind=ChannelKind.SLACK,
                secrets={"url": f"{webhook}/slack/T000/B000/XXXX"},
            ),
        ]
        if smtp_port is not None:
            made.append(
                await self.notify.create_channel(
                    name="ops-mail",
                    kind=ChannelKind.EMAIL,
                    config={
                        "host": "127.0.0.1",
                        "port": smtp_port,
                        "security": "none",
                        "from": "loom@example.test",
                        "to": ["oncall@example.test"],
                    },
                )
            )
        return [c.id for c in made]

    async def rule(self, channels: list[str], *, quiet: float, flow_id: str | None = FLOW) -> str:
        rule = await self.notify.create_rule(
            name="sync health",
            flow_id=flow_id,
            events=[EventKind.RUN_FAILED, EventKind.RUN_RECOVERED],
            channels=channels,
            quiet_seconds=quiet,
        )
        return rule.id

    async def deliveries(self) -> list[Delivery]:
        return await self.notify.list_deliveries(limit=1000)


async def eventually(
    check: Callable[[], Any], *, within: float = 10.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def all_sent(loom: Loom, count: int) -> list[Delivery]:
    async def done() -> list[Delivery] | None:
        found = await loom.deliveries()
        sent = [d for d in found if d.status is DeliveryStatus.SENT]
        return found if len(found) >= count and len(sent) == len(found) else None

    return await eventually(done, what=f"{count} deliveries sent")  # type: ignore[no-any-return]

"""``InMemoryForgeStore``: the forge store for unit tests and embedding without a database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from linkloom.forges.models import ForgeKind, LinkState, PullLink
from linkloom.forges.ports import StoredDelivery


class InMemoryForgeStore:
    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.pending: dict[str, StoredDelivery] = {}
        self.outcomes: dict[str, str] = {}
        self.pulls: dict[tuple[str, str, int], PullLink] = {}

    async def record_delivery(
        self,
        *,
        keys: Sequence[str],
        forge: ForgeKind,
        event: str,
        body: bytes,
        received_at: datetime,
    ) -> bool:
        if any(k in self.keys for k in keys):
            return False
        self.keys.update(keys)
        self.pending[keys[0]] = StoredDelivery(
            key=keys[0], forge=forge, event=event, body=body, received_at=received_at
        )
        return True

    async def finish_delivery(self, key: str, *, outcome: str, at: datetime) -> None:
        self.pending.pop(key, None)
        self.outcomes[key] = outcome

    async def unfinished_deliveries(self) -> list[StoredDelivery]:
        return sorted(self.pending.values(), key=lambda d: d.received_at)

    async def get_link(self, forge: ForgeKind, repo: str, number: int) -> PullLink | None:
        return self.pulls.get((forge.value, repo.lower(), number))

    async def link_of(self, proposal_id: str) -> PullLink | None:
        found = [p for p in self.pulls.values() if p.proposal_id == proposal_id]
        return max(found, key=lambda p: p.updated_at or p.created_at, default=None)  # type: ignore[arg-type,return-value]

    async def save_link(self, link: PullLink) -> None:
        self.pulls[(link.forge.value, link.repo.lower(), link.number)] = link

    async def links(self, *, open_only: bool = True) -> list[PullLink]:
        return [p for p in self.pulls.values() if not open_only or p.state is LinkState.OPEN]

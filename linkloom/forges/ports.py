"""What the forge service needs stored: deliveries (de-duplication, and the body until handled,
so a crash loses none) and pull request links. ``store/forges.py`` on SQL, ``memory.py`` here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from linkloom.forges.models import ForgeKind, PullLink


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredDelivery:
    key: str
    forge: ForgeKind
    event: str
    body: bytes
    received_at: datetime


class ForgeStore(Protocol):
    async def record_delivery(
        self,
        *,
        keys: Sequence[str],
        forge: ForgeKind,
        event: str,
        body: bytes,
        received_at: datetime,
    ) -> bool:
        """Store a delivery under all its keys at once; False (nothing stored) when any key was
        seen before: a replay."""
        ...

    async def finish_delivery(self, key: str, *, outcome: str, at: datetime) -> None:
        """Mark a delivery handled (its body is dropped)."""
        ...

    async def unfinished_deliveries(self) -> list[StoredDelivery]:
        """Deliveries received but not handled (a crash in between), oldest first."""
        ...

    async def get_link(self, forge: ForgeKind, repo: str, number: int) -> PullLink | None: ...

    async def link_of(self, proposal_id: str) -> PullLink | None: ...

    async def save_link(self, link: PullLink) -> None: ...

    async def links(self, *, open_only: bool = True) -> list[PullLink]: ...

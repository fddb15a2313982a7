"""What the notification service needs from persistence (``store/notifications.py`` implements
it over SQL; secrets are encrypted there, the service only sees plaintext ``Channel.secrets``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from linkloom.notifications.models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    QuietState,
    Rule,
)
from linkloom.notifications.rules import Decision


class NotificationStore(Protocol):
    async def save_channel(self, channel: Channel, *, create: bool) -> None: ...

    async def get_channel(self, ref: str) -> Channel | None: ...  # by id or by name

    async def list_channels(self) -> list[Channel]: ...

    async def delete_channel(self, channel_id: str) -> None: ...

    async def save_rule(self, rule: Rule, *, create: bool) -> None: ...

    async def get_rule(self, rule_id: str) -> Rule | None: ...

    async def list_rules(self) -> list[Rule]: ...

    async def delete_rule(self, rule_id: str) -> None: ...

    async def swap_health(self, flow_id: str, outcome: str, *, at: datetime) -> str | None:
        """Record the flow's latest outcome; answer the previous one (atomically)."""
        ...

    async def admit(
        self,
        *,
        rule: Rule,
        key: str,
        scope: str,
        decide: Callable[[QuietState | None], Decision],
        make: Callable[[Decision, Sequence[str]], list[Delivery]],
    ) -> list[Delivery]:
        """In one transaction: skip an event already delivered to the rule's channels, apply
        the quiet period (``decide``), and insert the deliveries ``make`` builds for the
        channels (ids) that have none for ``key`` yet."""
        ...

    async def add_delivery(self, delivery: Delivery) -> None: ...

    async def claim_due(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Pending deliveries due by ``now`` (and ones whose lease expired), leased to the
        caller until ``lease_until``."""
        ...

    async def finish_attempts(
        self, results: Sequence[tuple[Delivery, DeliveryAttempt]]
    ) -> None: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(
        self,
        *,
        channel_id: str | None = None,
        status: DeliveryStatus | None = None,
        flow_id: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]: ...

    async def list_attempts(self, delivery_id: str) -> list[DeliveryAttempt]: ...

"""``SqlNotificationStore``: channels (secrets encrypted), rules, deliveries and their attempts,
quiet periods and flow health, over a ``Database``.

Every write goes through ``Database.run_write``: on SQLite that is the run store's own serial
writer thread, so notification writes queue behind engine writes instead of contending for the
file lock (and its busy-wait back-off) from a second connection.

Channel secrets are a Fernet token (AES-128-CBC + HMAC) of their JSON, under a key derived from
``security.signing_key``; secrets written under a previous key (``previous_signing_keys``) still
read, and are re-encrypted under the current key when the channel is next saved.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from linkloom.errors import Conflict
from linkloom.notifications.models import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EventKind,
    Notification,
    QuietState,
    Rule,
)
from linkloom.notifications.rules import Decision
from linkloom.store import rows
from linkloom.store.session import Database
from linkloom.store.tables import (
    notification_attempts as attempts_t,
)
from linkloom.store.tables import (
    notification_channels as channels_t,
)
from linkloom.store.tables import (
    notification_deliveries as deliveries_t,
)
from linkloom.store.tables import (
    notification_flow_health as health_t,
)
from linkloom.store.tables import (
    notification_quiet as quiet_t,
)
from linkloom.store.tables import (
    notification_rules as rules_t,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ChannelNameTaken(Conflict):
    """A channel named {name!r} exists; pick another name or update that channel."""

    code = "channel_name_taken"


class SecretBox:
    """Encrypts channel secrets under keys derived from the signing keys (current first)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(_derive(k)) for k in keys or ["unset"]])

    def seal(self, secrets: dict[str, str]) -> str | None:
        if not secrets:
            return None
        return self._fernet.encrypt(json.dumps(secrets).encode()).decode()

    def open(self, token: str | None) -> dict[str, str]:
        if not token:
            return {}
        try:
            return dict(json.loads(self._fernet.decrypt(token.encode())))
        except InvalidToken:
            # The signing key changed without keeping the old one: the secret is lost, not leaked.
            log.warning("notification_secret_unreadable")
            return {}


def _derive(key: str) -> bytes:
    digest = hashlib.sha256(b"linkloom-notification-secrets\x00" + key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _db(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class SqlNotificationStore:
    def __init__(self, db: Database, *, keys: Sequence[str]) -> None:
        self.db = db
        self.box = SecretBox(keys)

    # ---- channels -----------------------------------------------------------------------------
    def _channel(self, row: Any) -> Channel:
        return Channel(
            id=row.id,
            name=row.name,
            kind=ChannelKind(row.kind),
            config=dict(row.config or {}),
            secrets=self.box.open(row.secrets),
            enabled=bool(row.enabled),
            created_at=rows.utc(row.created_at),
            updated_at=rows.utc(row.updated_at),
        )

    async def save_channel(self, channel: Channel, *, create: bool) -> None:
        values = {
            "name": channel.name,
            "kind": channel.kind.value,
            "config": channel.config,
            "secrets": self.box.seal(channel.secrets),
            "enabled": channel.enabled,
            "created_at": _db(channel.created_at),
            "updated_at": _db(channel.updated_at),
        }

        def write(conn: sa.Connection) -> None:
            taken = conn.execute(
                sa.select(channels_t.c.id).where(
                    channels_t.c.name == channel.name, channels_t.c.id != channel.id
                )
            ).first()
            if taken is not None:
                raise ChannelNameTaken(name=channel.name)
            if create:
                conn.execute(channels_t.insert().values(id=channel.id, **values))
            else:
                values.pop("created_at")
                conn.execute(
                    channels_t.update().where(channels_t.c.id == channel.id).values(**values)
                )

        try:
            await self.db.run_write(write)
        except sa.exc.IntegrityError as exc:
            raise ChannelNameTaken(name=channel.name) from exc

    async def get_channel(self, ref: str) -> Channel | None:
        query = channels_t.select().where(sa.or_(channels_t.c.id == ref, channels_t.c.name == ref))
        found = await self.db.run_read(lambda conn: conn.execute(query).all())
        by_id = [r for r in found if r.id == ref]
        chosen = by_id or found
        return self._channel(chosen[0]) if chosen else None

    async def list_channels(self) -> list[Channel]:
        async with self.db.read() as conn:
            found = (await conn.execute(channels_t.select().order_by(channels_t.c.name))).all()
        return [self._channel(r) for r in found]

    async def delete_channel(self, channel_id: str) -> None:
        await self.db.run_write(
            lambda conn: conn.execute(channels_t.delete().where(channels_t.c.id == channel_id))
        )

    # ---- rules --------------------------------------------------------------------------------
    @staticmethod
    def _rule(row: Any) -> Rule:
        return Rule(
            id=row.id,
            name=row.name,
            flow_id=row.flow_id,
            events=tuple(EventKind(e) for e in row.events or ()),
            channels=tuple(row.channels or ()),
            quiet_seconds=float(row.quiet_seconds),
            sla_seconds=row.sla_seconds,
            enabled=bool(row.enabled),
            created_at=rows.utc(row.created_at),
            updated_at=rows.utc(row.updated_at),
        )

    async def save_rule(self, rule: Rule, *, create: bool) -> None:
        values = {
            "name": rule.name,
            "flow_id": rule.flow_id,
            "events": [e.value for e in rule.events],
            "channels": list(rule.channels),
            "quiet_seconds": rule.quiet_seconds,
            "sla_seconds": rule.sla_seconds,
            "enabled": rule.enabled,
            "updated_at": _db(rule.updated_at),
        }

        def write(conn: sa.Connection) -> None:
            if create:
                conn.execute(
                    rules_t.insert().values(id=rule.id, created_at=_db(rule.created_at), **values)
                )
            else:
                conn.execute(rules_t.update().where(rules_t.c.id == rule.id).values(**values))

        await self.db.run_write(write)

    async def get_rule(self, rule_id: str) -> Rule | None:
        async with self.db.read() as conn:
            row = (await conn.execute(rules_t.select().where(rules_t.c.id == rule_id))).first()
        return self._rule(row) if row is not None else None

    async def list_rules(self) -> list[Rule]:
        query = rules_t.select().order_by(rules_t.c.created_at, rules_t.c.id)
        found = await self.db.run_read(lambda conn: conn.execute(query).all())
        return [self._rule(r) for r in found]

    async def delete_rule(self, rule_id: str) -> None:
        def write(conn: sa.Connection) -> None:
            conn.execute(rules_t.delete().where(rules_t.c.id == rule_id))
            conn.execute(quiet_t.delete().where(quiet_t.c.rule_id == rule_id))

        await self.db.run_write(write)

    # ---- flow health and quiet periods ------------------------------------------------------
    async def swap_health(self, flow_id: str, outcome: str, *, at: datetime) -> str | None:
        def write(conn: sa.Connection) -> str | None:
            query = sa.select(health_t.c.outcome).where(health_t.c.flow_id == flow_id)
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            previous = conn.execute(query).scalar_one_or_none()
            if previous is None:
                conn.execute(
                    health_t.insert().values(flow_id=flow_id, outcome=outcome, updated_at=_db(at))
                )
            else:
                conn.execute(
                    health_t.update()
                    .where(health_t.c.flow_id == flow_id)
                    .values(outcome=outcome, updated_at=_db(at))
                )
            return previous

        return await self._retrying(write)

    async def admit(
        self,
        *,
        rule: Rule,
        key: str,
        scope: str,
        decide: Callable[[QuietState | None], Decision],
        make: Callable[[Decision, Sequence[str]], list[Delivery]],
    ) -> list[Delivery]:
        def write(conn: sa.Connection) -> list[Delivery]:
            known = set(
                conn.execute(
                    sa.select(deliveries_t.c.channel_id).where(
                        deliveries_t.c.key == key, deliveries_t.c.channel_id.in_(rule.channels)
                    )
                ).scalars()
            )
            fresh = [c for c in rule.channels if c not in known]
            if not fresh:
                return []  # this event already went to every channel of the rule
            query = quiet_t.select().where(quiet_t.c.rule_id == rule.id, quiet_t.c.scope == scope)
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            state = (
                QuietState(
                    rule_id=row.rule_id,
                    scope=row.scope,
                    last_sent_at=rows.utc(row.last_sent_at) or datetime.now(UTC),
                    suppressed=int(row.suppressed),
                )
                if row is not None
                else None
            )
            decision = decide(state)
            values = {
                "last_sent_at": _db(decision.state.last_sent_at),
                "suppressed": decision.state.suppressed,
            }
            if row is None:
                conn.execute(quiet_t.insert().values(rule_id=rule.id, scope=scope, **values))
            else:
                conn.execute(
                    quiet_t.update()
                    .where(quiet_t.c.rule_id == rule.id, quiet_t.c.scope == scope)
                    .values(**values)
                )
            if not decision.send:
                return []
            made = make(decision, fresh)
            for delivery in made:
                conn.execute(deliveries_t.insert().values(**_delivery_values(delivery)))
            return made

        return await self._retrying(write)

    async def _retrying(self, write: Callable[[sa.Connection], T]) -> T:
        """Run ``write``; once more after a unique-key race with another process."""
        try:
            return await self.db.run_write(write)
        except sa.exc.IntegrityError:
            return await self.db.run_write(write)

    # ---- deliveries ---------------------------------------------------------------------------
    async def add_delivery(self, delivery: Delivery) -> None:
        values = _delivery_values(delivery)
        await self.db.run_write(lambda conn: conn.execute(deliveries_t.insert().values(**values)))

    async def claim_due(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        d = deliveries_t
        at = _db(now)
        due = sa.or_(
            sa.and_(d.c.status == DeliveryStatus.PENDING.value, d.c.next_attempt_at <= at),
            sa.and_(d.c.status == DeliveryStatus.SENDING.value, d.c.lease_until <= at),
        )
        # A read first: the dispatcher polls, and on SQLite a write transaction takes the lock.
        probe = sa.select(d.c.id).where(due).limit(1)
        if await self.db.run_read(lambda conn: conn.execute(probe).first()) is None:
            return []

        def write(conn: sa.Connection) -> list[Delivery]:
            query = d.select().where(due).order_by(d.c.next_attempt_at).limit(limit)
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            found = conn.execute(query).all()
            if not found:
                return []
            conn.execute(
                d.update()
                .where(d.c.id.in_([r.id for r in found]))
                .values(status=DeliveryStatus.SENDING.value, lease_until=_db(lease_until))
            )
            return [
                _delivery(r, status=DeliveryStatus.SENDING, lease_until=lease_until) for r in found
            ]

        return await self.db.run_write(write)

    async def finish_attempts(self, results: Sequence[tuple[Delivery, DeliveryAttempt]]) -> None:
        """Log each attempt and update its delivery, all in one transaction."""

        def write(conn: sa.Connection) -> None:
            for delivery, attempt in results:
                conn.execute(
                    attempts_t.insert().values(
                        delivery_id=attempt.delivery_id,
                        number=attempt.number,
                        ok=attempt.ok,
                        status_code=attempt.status_code,
                        error=attempt.error,
                        duration_ms=attempt.duration_ms,
                        at=_db(attempt.at),
                    )
                )
                conn.execute(
                    deliveries_t.update()
                    .where(deliveries_t.c.id == delivery.id)
                    .values(
                        status=delivery.status.value,
                        attempts=delivery.attempts,
                        next_attempt_at=_db(delivery.next_attempt_at),
                        lease_until=_db(delivery.lease_until),
                        last_error=delivery.last_error,
                        sent_at=_db(delivery.sent_at),
                    )
                )

        if results:
            await self.db.run_write(write)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        query = deliveries_t.select().where(deliveries_t.c.id == delivery_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _delivery(row) if row is not None else None

    async def list_deliveries(
        self,
        *,
        channel_id: str | None = None,
        status: DeliveryStatus | None = None,
        flow_id: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        d = deliveries_t
        query = d.select()
        if channel_id is not None:
            query = query.where(d.c.channel_id == channel_id)
        if status is not None:
            query = query.where(d.c.status == status.value)
        if flow_id is not None:
            query = query.where(d.c.flow_id == flow_id)
        query = query.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit)
        async with self.db.read() as conn:
            return [_delivery(r) for r in (await conn.execute(query)).all()]

    async def list_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        a = attempts_t
        query = a.select().where(a.c.delivery_id == delivery_id).order_by(a.c.number)
        async with self.db.read() as conn:
            found = (await conn.execute(query)).all()
        return [
            DeliveryAttempt(
                delivery_id=r.delivery_id,
                number=r.number,
                ok=bool(r.ok),
                status_code=r.status_code,
                error=r.error,
                duration_ms=float(r.duration_ms or 0),
                at=rows.utc(r.at) or datetime.now(UTC),
            )
            for r in found
        ]


def _delivery_values(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "channel_id": d.channel_id,
        "rule_id": d.rule_id,
        "key": d.key,
        "kind": d.notification.kind.value,
        "flow_id": d.notification.flow_id,
        "notification": d.notification.to_dict(),
        "status": d.status.value,
        "attempts": d.attempts,
        "max_attempts": d.max_attempts,
        "next_attempt_at": _db(d.next_attempt_at),
        "lease_until": _db(d.lease_until),
        "last_error": d.last_error,
        "created_at": _db(d.created_at),
        "sent_at": _db(d.sent_at),
    }


def _delivery(row: Any, **overrides: Any) -> Delivery:
    values: dict[str, Any] = {
        "id": row.id,
        "channel_id": row.channel_id,
        "rule_id": row.rule_id,
        "key": row.key,
        "notification": Notification.from_dict(dict(row.notification)),
        "status": DeliveryStatus(row.status),
        "attempts": int(row.attempts),
        "max_attempts": int(row.max_attempts),
        "next_attempt_at": rows.utc(row.next_attempt_at),
        "lease_until": rows.utc(row.lease_until),
        "last_error": row.last_error,
        "created_at": rows.utc(row.created_at),
        "sent_at": rows.utc(row.sent_at),
    }
    values.update(overrides)
    return Delivery(**values)

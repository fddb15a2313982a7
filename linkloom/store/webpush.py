"""``SqlWebPushStore``: the web app's personal notifications (preferences, notes, Web Push
subscriptions, the server's VAPID keys) over a ``Database``.

The VAPID private key is generated once (the first process to need it wins a race on row 1;
the others read it) and stored sealed like notification channel secrets (Fernet, under a key
derived from ``security.signing_key``).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from linkloom.access import Role
from linkloom.notifications import webpush
from linkloom.notifications.personal import (
    PersonalEvent,
    PersonalNote,
    Preferences,
    PushSubscription,
)
from linkloom.store import rows
from linkloom.store.notifications import SecretBox
from linkloom.store.session import Database
from linkloom.store.tables import web_notification_prefs as prefs_t
from linkloom.store.tables import web_notifications as notes_t
from linkloom.store.tables import web_push_keys as keys_t
from linkloom.store.tables import web_push_subscriptions as subs_t

KNOWN = {e.value for e in PersonalEvent}  # a stored choice a later version dropped is ignored


def _prefs(row: Any) -> Preferences:
    return Preferences(
        actor=row.actor,
        role=Role(row.role),
        events=tuple(PersonalEvent(e) for e in row.events or () if e in KNOWN),
        flows=tuple(row.flows or ()),
        updated_at=rows.utc(row.updated_at),
    )


def _note(row: Any) -> PersonalNote:
    created = rows.utc(row.created_at)
    assert created is not None
    return PersonalNote(
        id=int(row.id),
        actor=row.actor,
        key=row.key,
        kind=PersonalEvent(row.kind),
        title=row.title,
        body=row.body,
        url=row.url,
        created_at=created,
    )


def _subscription(row: Any) -> PushSubscription:
    created = rows.utc(row.created_at)
    assert created is not None
    return PushSubscription(
        id=row.id,
        actor=row.actor,
        endpoint=row.endpoint,
        p256dh=row.p256dh,
        auth=row.auth,
        created_at=created,
        failures=int(row.failures or 0),
    )


class SqlWebPushStore:
    def __init__(self, db: Database, *, keys: list[str]) -> None:
        self.db = db
        self.box = SecretBox(keys)

    # ---- preferences ------------------------------------------------------------------------
    async def preferences(self, actor: str) -> Preferences | None:
        query = prefs_t.select().where(prefs_t.c.actor == actor)
        row = await self.db.run_read(lambda c: c.execute(query).first())
        return _prefs(row) if row else None

    async def all_preferences(self) -> list[Preferences]:
        found = await self.db.run_read(lambda c: c.execute(prefs_t.select()).all())
        return [_prefs(r) for r in found]

    async def save_preferences(self, prefs: Preferences, *, now: datetime) -> None:
        values = {
            "role": prefs.role.value,
            "events": [e.value for e in prefs.events],
            "flows": list(prefs.flows),
            "updated_at": now,
        }

        def write(conn: sa.Connection) -> None:
            done = conn.execute(
                prefs_t.update().where(prefs_t.c.actor == prefs.actor).values(**values)
            )
            if not done.rowcount:
                conn.execute(prefs_t.insert().values(actor=prefs.actor, **values))

        try:
            await self.db.run_write(write)
        except sa.exc.IntegrityError:  # saved at the same moment elsewhere: ours is the last
            await self.db.run_write(write)

    # ---- notes --------------------------------------------------------------------------------
    async def record(self, note: PersonalNote) -> PersonalNote | None:
        values = {
            "actor": note.actor,
            "key": note.key[:300],
            "kind": note.kind.value,
            "title": note.title,
            "body": note.body,
            "url": note.url,
            "created_at": note.created_at,
        }

        def write(conn: sa.Connection) -> Any:
            taken = conn.execute(
                sa.select(notes_t.c.id).where(
                    notes_t.c.actor == note.actor, notes_t.c.key == values["key"]
                )
            ).first()
            if taken is not None:
                return None
            inserted: Any = conn.execute(notes_t.insert().values(**values)).inserted_primary_key
            return inserted[0]

        try:
            new_id = await self.db.run_write(write)
        except sa.exc.IntegrityError:
            return None  # another process recorded it first
        if new_id is None:
            return None
        return PersonalNote(**{**_as_dict(note), "id": int(new_id)})

    async def notes_after(self, actor: str, after: int, *, limit: int = 50) -> list[PersonalNote]:
        query = (
            notes_t.select()
            .where(notes_t.c.actor == actor, notes_t.c.id > after)
            .order_by(notes_t.c.id)
            .limit(limit)
        )
        found = await self.db.run_read(lambda c: c.execute(query).all())
        return [_note(r) for r in found]

    async def last_note_id(self, actor: str) -> int:
        query = sa.select(sa.func.max(notes_t.c.id)).where(notes_t.c.actor == actor)
        found = await self.db.run_read(lambda c: c.execute(query).scalar())
        return int(found or 0)

    # ---- subscriptions --------------------------------------------------------------------------
    async def add_subscription(
        self, *, actor: str, endpoint: str, p256dh: str, auth: str, now: datetime
    ) -> PushSubscription:
        """Store a browser's subscription for ``actor`` (an endpoint belongs to one user: the
        last one to subscribe with it)."""
        values = {"actor": actor, "p256dh": p256dh, "auth": auth, "failures": 0, "last_error": None}

        def write(conn: sa.Connection) -> str:
            found = conn.execute(
                sa.select(subs_t.c.id).where(subs_t.c.endpoint == endpoint)
            ).first()
            if found is not None:
                conn.execute(subs_t.update().where(subs_t.c.id == found.id).values(**values))
                return str(found.id)
            new = "sub_" + uuid.uuid4().hex[:16]
            conn.execute(
                subs_t.insert().values(id=new, endpoint=endpoint, created_at=now, **values)
            )
            return new

        try:
            sub_id = await self.db.run_write(write)
        except sa.exc.IntegrityError:
            sub_id = await self.db.run_write(write)
        return PushSubscription(
            id=sub_id,
            actor=actor,
            endpoint=endpoint,
            p256dh=p256dh,
            auth=auth,
            created_at=now,
        )

    async def subscriptions(self, actor: str) -> list[PushSubscription]:
        query = subs_t.select().where(subs_t.c.actor == actor).order_by(subs_t.c.created_at)
        found = await self.db.run_read(lambda c: c.execute(query).all())
        return [_subscription(r) for r in found]

    async def remove_subscription(self, endpoint: str, *, actor: str | None = None) -> bool:
        query = subs_t.delete().where(subs_t.c.endpoint == endpoint)
        if actor is not None:
            query = query.where(subs_t.c.actor == actor)
        done = await self.db.run_write(lambda c: c.execute(query).rowcount)
        return bool(done)

    async def subscription_result(self, endpoint: str, *, error: str | None) -> None:
        where = subs_t.c.endpoint == endpoint
        if error is None:
            query = subs_t.update().where(where).values(failures=0, last_error=None)
        else:
            query = (
                subs_t.update()
                .where(where)
                .values(failures=subs_t.c.failures + 1, last_error=error[:1000])
            )
        await self.db.run_write(lambda c: c.execute(query))

    # ---- the server's VAPID keys ----------------------------------------------------------------
    async def vapid_keys(self, *, now: datetime) -> webpush.VapidKeys:
        """The server's key pair, generated on first use."""
        found: Any = await self.db.run_read(
            lambda c: c.execute(keys_t.select().where(keys_t.c.id == 1)).first()
        )
        if found is None:
            made = webpush.generate_keys()
            sealed = self.box.seal({"pem": made.private_pem})
            # another process may make them first: then use theirs
            with contextlib.suppress(sa.exc.IntegrityError):
                await self.db.run_write(
                    lambda c: c.execute(
                        keys_t.insert().values(
                            id=1, public_key=made.public_key, private_key=sealed, created_at=now
                        )
                    )
                )
            found = await self.db.run_read(
                lambda c: c.execute(keys_t.select().where(keys_t.c.id == 1)).first()
            )
        pem = self.box.open(found.private_key).get("pem", "")
        if not pem:
            raise RuntimeError(
                "the Web Push key cannot be read: the signing key changed without keeping the "
                "old one in security.previous_signing_keys"
            )
        return webpush.VapidKeys(public_key=found.public_key, private_pem=pem)


def _as_dict(note: PersonalNote) -> dict[str, Any]:
    return {f: getattr(note, f) for f in PersonalNote.__dataclass_fields__}


class LazySender:
    """Web Push through ``pywebpush`` with the server's keys, read when first needed."""

    def __init__(self, store: SqlWebPushStore, *, subject: str, clock: Any) -> None:
        self.store = store
        self.subject = subject
        self.clock = clock
        self._sender: webpush.WebPushSender | None = None

    async def send(self, subscription: PushSubscription, payload: dict[str, str]) -> Any:
        if self._sender is None:
            keys = await self.store.vapid_keys(now=self.clock.now())
            self._sender = webpush.WebPushSender(keys=keys, subject=self.subject)
        return await self._sender.send(subscription, payload)

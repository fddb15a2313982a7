"""``SqlWebSessions``: the web UI's sign-ins in the ``web_sessions`` table.

The browser's ``loom_session`` cookie holds a random secret; the table keeps its SHA-256 only,
so neither a database dump nor the cookie is an API token. A session is valid while it is not
revoked (sign-out), its token is not revoked, ``expires_at`` (absolute) is ahead and the last
request was less than ``idle`` ago::

    secret, record = await sessions.create(token_id=token.id, now=now, lifetime=43200)
    found = await sessions.authenticate(secret, now=now, idle=7200)   # WebSession, or None
    await sessions.revoke(secret, now=now)                            # sign-out

Signing in again from a browser that holds a cookie replaces that session:
``create(..., replacing=[old_secret])`` revokes it in the same transaction, whoever it belonged
to, so no cookie value known before a sign-in (one an attacker planted) works after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from linkloom import access
from linkloom.access import Role, WebSession
from linkloom.store import rows
from linkloom.store.session import Database
from linkloom.store.tables import api_tokens, web_sessions

TOUCH_EVERY = 60.0  # seconds: last_seen_at is written at most this often per session


def _session(row: Any) -> WebSession:
    created = rows.utc(row.created_at)
    seen = rows.utc(row.last_seen_at)
    expires = rows.utc(row.expires_at)
    assert created is not None
    assert seen is not None
    assert expires is not None
    return WebSession(
        id=row.id,
        token_id=row.token_id,
        token_name=row.name,
        role=Role(row.role),
        created_at=created,
        last_seen_at=seen,
        expires_at=expires,
    )


def _select() -> sa.Select[Any]:
    return sa.select(
        web_sessions.c.id,
        web_sessions.c.token_id,
        web_sessions.c.created_at,
        web_sessions.c.last_seen_at,
        web_sessions.c.expires_at,
        api_tokens.c.name,
        api_tokens.c.role,
    ).join(api_tokens, api_tokens.c.id == web_sessions.c.token_id)


class SqlWebSessions:
    """Web sign-in sessions over a ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, *, token_id: str, now: datetime, lifetime: float, replacing: Sequence[str] = ()
    ) -> tuple[str, WebSession]:
        """Start a session for the (active) token; return its secret (for the cookie only).

        The sessions whose secrets are in ``replacing`` (the cookies the browser sent) end in
        the same transaction: a sign-in never leaves an earlier cookie value alive."""
        secret = access.new_session_secret()
        session_id = access.new_session_id()
        async with self.db.begin() as conn:
            # Sessions past their absolute end are of no use to anyone: forget them.
            await conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))
            if replaced := [access.hash_secret(old) for old in replacing if old]:
                await conn.execute(_revoking(replaced, now=now))
            await conn.execute(
                web_sessions.insert().values(
                    id=session_id,
                    secret_hash=access.hash_secret(secret),
                    token_id=token_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(seconds=lifetime),
                )
            )
        async with self.db.read() as conn:
            row = (await conn.execute(_select().where(web_sessions.c.id == session_id))).one()
        return secret, _session(row)

    async def authenticate(self, secret: str, *, now: datetime, idle: float) -> WebSession | None:
        """The live session with this secret (its token active, neither expired nor signed
        out), or None; records the request (at most every ``TOUCH_EVERY`` seconds)."""
        if not secret:
            return None
        query = _select().where(
            web_sessions.c.secret_hash == access.hash_secret(secret),
            web_sessions.c.revoked_at.is_(None),
            api_tokens.c.revoked_at.is_(None),
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        found = _session(row)
        if now >= found.expires_at or now - found.last_seen_at >= timedelta(seconds=idle):
            return None
        if now - found.last_seen_at >= timedelta(seconds=min(TOUCH_EVERY, idle / 10)):
            async with self.db.begin() as conn:
                await conn.execute(
                    web_sessions.update()
                    .where(web_sessions.c.id == found.id)
                    .values(last_seen_at=now)
                )
        return found

    async def revoke(self, secret: str, *, now: datetime) -> None:
        """End the session with this secret (sign-out); unknown secrets are ignored."""
        if not secret:
            return
        async with self.db.begin() as conn:
            await conn.execute(_revoking([access.hash_secret(secret)], now=now))


def _revoking(secret_hashes: Sequence[str], *, now: datetime) -> sa.Update:
    return (
        web_sessions.update()
        .where(
            web_sessions.c.secret_hash.in_(secret_hashes),
            web_sessions.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )

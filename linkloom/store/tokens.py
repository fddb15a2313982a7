"""``SqlTokenStore``: API tokens in the ``api_tokens`` table (only the secret's hash is stored).

secret, token = await tokens.create(name="ci", role=Role.author, now=now)
found = await tokens.authenticate(secret)      # the ApiToken, or None (unknown or revoked)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from linkloom import access
from linkloom.access import ApiToken, Role
from linkloom.store.session import Database, utc
from linkloom.store.tables import api_tokens, web_sessions


def _token(row: Any) -> ApiToken:
    created = utc(row.created_at)
    assert created is not None
    return ApiToken(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=created,
        last_used_at=utc(row.last_used_at),
        revoked_at=utc(row.revoked_at),
    )


class SqlTokenStore:
    """API tokens over a ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, *, name: str, role: Role, now: datetime, secret: str | None = None
    ) -> tuple[str, ApiToken]:
        """Store a new token; return its secret (shown once) and the record."""
        secret = secret or access.new_secret()
        token = ApiToken(id=access.new_token_id(), name=name, role=role, created_at=now)
        async with self.db.begin() as conn:
            await conn.execute(
                api_tokens.insert().values(
                    id=token.id,
                    name=name,
                    role=role.value,
                    token_hash=access.hash_secret(secret),
                    created_at=now,
                )
            )
        return secret, token

    async def authenticate(self, secret: str) -> ApiToken | None:
        """The active token with this secret, or None."""
        query = api_tokens.select().where(
            api_tokens.c.token_hash == access.hash_secret(secret),
            api_tokens.c.revoked_at.is_(None),
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _token(row) if row else None

    async def touch(self, token_id: str, *, now: datetime) -> None:
        """Record when the token was last used."""
        async with self.db.begin() as conn:
            await conn.execute(
                api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=now)
            )

    async def get(self, token_id: str) -> ApiToken:
        async with self.db.read() as conn:
            row = (
                await conn.execute(api_tokens.select().where(api_tokens.c.id == token_id))
            ).first()
        if row is None:
            raise access.TokenNotFound(token_id=token_id)
        return _token(row)

    async def list(self, *, include_revoked: bool = False) -> list[ApiToken]:
        query = api_tokens.select().order_by(api_tokens.c.created_at, api_tokens.c.id)
        if not include_revoked:
            query = query.where(api_tokens.c.revoked_at.is_(None))
        async with self.db.read() as conn:
            return [_token(r) for r in (await conn.execute(query)).all()]

    async def count_active(self) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(api_tokens)
            .where(api_tokens.c.revoked_at.is_(None))
        )
        async with self.db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def revoke(self, token_id: str, *, now: datetime) -> ApiToken:
        """Revoke a token and end its web sessions (idempotent); raises ``TokenNotFound``."""
        token = await self.get(token_id)
        if token.revoked_at is not None:
            return token
        async with self.db.begin() as conn:
            await conn.execute(
                api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=now)
            )
            # Its web sign-ins end too (they also check the token on every request).
            await conn.execute(
                web_sessions.update()
                .where(web_sessions.c.token_id == token_id, web_sessions.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return await self.get(token_id)

"""Who is calling: bearer tokens mapped to an ``Actor`` with a role.

``Authorization: Bearer <secret>``; the secret is hashed (SHA-256) and looked up among the active
tokens (``store.tokens``). With ``server.auth`` off (loopback development only: ``loom server``
refuses it on other addresses) every caller is the ``anonymous`` admin. The API checks the
header on each call; the web UI checks the token once, at sign-in, and then resolves its session
cookie to the same ``Actor``. Framework-free: ``wiring`` builds the ``Authenticator``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from linkloom.access import ApiToken, Role
from linkloom.errors import NotAuthenticated, NotPermitted

TOUCH_EVERY = 60.0  # seconds between writes of a token's last_used_at


class TokenStore(Protocol):
    """What authenticating needs of the token store (``store.tokens.SqlTokenStore``)."""

    async def authenticate(self, secret: str) -> ApiToken | None: ...

    async def touch(self, token_id: str, *, now: datetime) -> None: ...


class TokenInvalid(NotAuthenticated):
    """The token is unknown or revoked; create one with 'loom token create --name … --role …'."""

    code = "token_invalid"


class MissingToken(NotAuthenticated):
    """Authentication required: send 'Authorization: Bearer <token>' (see 'loom token create')."""

    code = "not_authenticated"


class RoleTooLow(NotPermitted):
    """This needs the {needed} role; your token {name!r} has {role}. Ask an admin for a token."""

    code = "role_too_low"


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    name: str  # the token's name; recorded in the audit log
    role: Role
    token_id: str | None = None

    def require(self, needed: Role) -> None:
        if not self.role.allows(needed):
            raise RoleTooLow(needed=needed.value, name=self.name, role=self.role.value)


ANONYMOUS = Actor(name="anonymous", role=Role.admin)


class Authenticator:
    """Resolves the ``Authorization`` header to an ``Actor``."""

    def __init__(self, *, tokens: TokenStore, clock: Any, enabled: bool = True) -> None:
        self.tokens = tokens
        self.clock = clock
        self.enabled = enabled
        self._touched: dict[str, float] = {}

    async def actor(self, authorization: str | None) -> Actor:
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            raise MissingToken()
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise MissingToken()
        token = await self.tokens.authenticate(secret.strip())
        if token is None:
            raise TokenInvalid()
        await self.touch(token.id)
        return Actor(name=token.name, role=token.role, token_id=token.id)

    async def touch(self, token_id: str) -> None:
        """Record the token's use (API calls, and web pages through its sign-in session), at
        most every ``TOUCH_EVERY`` seconds."""
        now = time.monotonic()
        if now - self._touched.get(token_id, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[token_id] = now
            await self.tokens.touch(token_id, now=self.clock.now())

"""Access control records: roles, API tokens and audit entries.

Shared by ``store`` (persists them), ``api`` (checks them on every request) and ``cli``
(``loom token …``, ``loom audit``). Framework-free.

Key contracts:
- A token's secret is shown once, at creation; only ``hash_secret(secret)`` (SHA-256) is stored.
- Roles are ordered: ``viewer < author < reviewer < admin``; a role may do everything a lower
  one may (``role.allows(needed)``).
- Every mutating API call writes one ``AuditEntry``: who (token name), what (``action``), to
  which object (``object_type``/``object_id``), when, with small ``details``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from linkloom.errors import InvalidInput, NotFound

TOKEN_PREFIX = "loom_"


class Role(StrEnum):
    viewer = "viewer"  # reads flows, runs, logs, proposals, dead letters
    author = "author"  # also triggers, cancels, retries runs, re-drives dead letters, proposes
    reviewer = "reviewer"  # also approves and promotes proposals, reads the audit log
    admin = "admin"  # also applies, deletes, rolls back flows, manages tokens and channels

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise UnknownRole(role=text) from None


_RANKS = {Role.viewer: 0, Role.author: 1, Role.reviewer: 2, Role.admin: 3}


class UnknownRole(InvalidInput):
    """Unknown role {role!r}; use one of viewer, author, reviewer, admin."""

    code = "unknown_role"


class TokenNotFound(NotFound):
    """Token {token_id!r} not found; list tokens with 'loom token list'."""

    code = "token_not_found"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """A stored API token (never its secret)."""

    id: str
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSession:
    """A web UI sign-in (never its secret, which only the browser's cookie holds): the token it
    was made from, and when it ends (idle or absolute expiry, sign-out, the token's revocation)."""

    id: str
    token_id: str
    token_name: str
    role: Role
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # absolute: the session ends here however active it is


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One mutating action: who did what to which object, and when."""

    id: int = 0
    actor: str | None
    action: str  # e.g. flow.apply, run.trigger, token.revoke
    object_type: str  # flow | run | dead_letter | token | webhook | callback …
    object_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def new_secret() -> str:
    """A fresh token secret: ``loom_`` and 43 URL-safe characters (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What the database stores for a token: the SHA-256 of its secret, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(8)


def new_session_secret() -> str:
    """A web sign-in session's cookie value: 256 random bits, without the ``loom_`` prefix of
    API tokens (it is no token: the API refuses it)."""
    return secrets.token_urlsafe(32)


def new_session_id() -> str:
    return "ses_" + secrets.token_hex(8)

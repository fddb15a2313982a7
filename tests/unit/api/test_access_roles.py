"""Roles, token secrets and the authenticator (no I/O: an in-memory token store)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from linkloom import access, auth
from linkloom.access import ApiToken, Role
from linkloom.cli.server import UnsafeBind, check_bind, is_loopback
from linkloom.config import load_settings
from linkloom.testing import SystemClock


def test_roles_are_ordered_viewer_author_reviewer_admin() -> None:
    order = [Role.viewer, Role.author, Role.reviewer, Role.admin]
    for i, lower in enumerate(order):
        for higher in order[i:]:
            assert higher.allows(lower)
        for above in order[i + 1 :]:
            assert not lower.allows(above)


def test_role_parse_names_the_choices() -> None:
    assert Role.parse(" Admin ") is Role.admin
    with pytest.raises(access.UnknownRole, match="viewer, author, reviewer, admin"):
        Role.parse("boss")


def test_token_secrets_are_random_and_only_hashes_are_kept() -> None:
    first, second = access.new_secret(), access.new_secret()
    assert first != second
    assert first.startswith("loom_")
    assert len(first) > 40
    digest = access.hash_secret(first)
    assert len(digest) == 64
    assert first not in digest


class _Tokens:
    def __init__(self, token: ApiToken, secret: str) -> None:
        self.by_hash = {access.hash_secret(secret): token}
        self.touched: list[str] = []

    async def authenticate(self, secret: str) -> ApiToken | None:
        return self.by_hash.get(access.hash_secret(secret))

    async def touch(self, token_id: str, *, now: datetime) -> None:
        self.touched.append(token_id)


def _authenticator(enabled: bool = True) -> tuple[auth.Authenticator, _Tokens]:
    token = ApiToken(id="tok_1", name="ci", role=Role.author, created_at=datetime.now(UTC))
    tokens = _Tokens(token, "loom_secret")
    return auth.Authenticator(tokens=tokens, clock=SystemClock(), enabled=enabled), tokens  # type: ignore[arg-type]


async def test_authenticator_maps_bearer_tokens_to_actors() -> None:
    authenticator, tokens = _authenticator()
    actor = await authenticator.actor("Bearer loom_secret")
    assert actor == auth.Actor(name="ci", role=Role.author, token_id="tok_1")
    await authenticator.actor("bearer loom_secret")
    assert tokens.touched == ["tok_1"]  # last-used is written at most once a minute
    with pytest.raises(auth.TokenInvalid):
        await authenticator.actor("Bearer wrong")
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(auth.MissingToken):
            await authenticator.actor(header)


async def test_actor_require_names_the_needed_role() -> None:
    actor = auth.Actor(name="ci", role=Role.author)
    actor.require(Role.viewer)
    with pytest.raises(auth.RoleTooLow, match="needs the admin role"):
        actor.require(Role.admin)


async def test_auth_off_makes_everyone_the_anonymous_admin() -> None:
    authenticator, _ = _authenticator(enabled=False)
    assert await authenticator.actor(None) == auth.ANONYMOUS
    assert auth.ANONYMOUS.role is Role.admin


def test_open_bind_without_auth_is_refused() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("10.0.0.5")
    check_bind(load_settings(server={"host": "0.0.0.0", "auth": True}))
    check_bind(load_settings(server={"host": "127.0.0.1", "auth": False}))
    with pytest.raises(UnsafeBind, match=r"0\.0\.0\.0"):
        check_bind(load_settings(server={"host": "0.0.0.0", "auth": False}))

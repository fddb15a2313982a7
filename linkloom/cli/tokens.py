"""``loom token create|list|revoke``: API tokens and their roles.

Through the API (admin token) by default; ``--local`` works directly on the database of this
machine's settings (``LOOM_DATABASE__URL`` or the embedded SQLite), for the server host, e.g.
when the only admin token is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import token_app
from linkloom.cli.connection import connect
from linkloom.cli.output import OutputFormat, OutputOption

if TYPE_CHECKING:
    from linkloom.store.tokens import SqlTokenStore

T = TypeVar("T")
LocalOption = Annotated[
    bool, typer.Option("--local", help="Use this machine's database instead of the API.")
]
TOKEN_COLUMNS: list[out.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("ROLE", "role"),
    ("CREATED", lambda r: out.when(r.get("created_at"))),
    ("LAST USED", lambda r: out.when(r.get("last_used_at"))),
    ("REVOKED", lambda r: out.when(r.get("revoked_at"))),
]


def _local(work: Callable[[SqlTokenStore], Awaitable[T]]) -> T:
    import asyncio

    from linkloom import config, wiring

    async def run() -> T:
        async with wiring.token_store(config.load_settings()) as tokens:
            return await work(tokens)

    return asyncio.run(run())


def _json(token: Any) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role.value,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


@token_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the token (shown in the audit log).")],
    role: Annotated[str, typer.Option(help="viewer, author, reviewer or admin.")],
    local: LocalOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a token. Its secret is printed once: store it now."""
    from linkloom.access import Role

    parsed = Role.parse(role)
    if local:
        secret, token = _local(lambda tokens: tokens.create(name=name, role=parsed, now=_now()))
        data = {**_json(token), "secret": secret}
    else:
        with connect() as loom:
            data = loom.post("/tokens", {"name": name, "role": parsed.value})
    if output is not OutputFormat.table:
        out.emit(data, output=output)
        return
    typer.echo(f"token {data['id']} ({data['name']}, {data['role']}) created; its secret:")
    typer.echo(data["secret"])
    typer.echo("Store it now: it is not shown again. Use it with: loom config set token <secret>")


@token_app.command("list")
def list_tokens(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    local: LocalOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List tokens (never their secrets)."""
    if local:
        tokens = _local(lambda store: store.list(include_revoked=all_))
        rows = [_json(t) for t in tokens]
    else:
        with connect() as loom:
            rows = loom.get("/tokens", include_revoked=all_)
    out.emit(rows, columns=TOKEN_COLUMNS, output=output, title="Tokens", empty="no tokens")


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (tok_…), from 'loom token list'.")],
    local: LocalOption = False,
) -> None:
    """Revoke a token: requests with it are refused from now on."""
    if local:
        _local(lambda store: store.revoke(token_id, now=_now()))
    else:
        with connect() as loom:
            loom.call("DELETE", f"/tokens/{token_id}")
    typer.echo(f"token {token_id} revoked")


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)

"""An author's hourly budget (``proposals.author_*_per_hour``) is one budget for every server
process on a database, and survives a restart: each "process" here is a set of services built
independently from the settings (its own engines, its own flows repo), on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from linkloom import config, wiring
from linkloom.proposals.limits import AuthorQuotaExceeded
from linkloom.proposals.models import Spending
from linkloom.store import session
from linkloom.store.proposals import SqlProposalStore
from tests.support import databases

pytestmark = [pytest.mark.timeout(300)]

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "flows"
REVISIONS = 2  # author_revisions_per_hour
HOURLY_BYTES = 1000  # author_bytes_per_hour
BAD_SPEC = "id: daily-report\nsteps: 12\n"  # a change to a flow; its checks are not run here


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        with databases.fresh_database("budget", migrate=True) as url:
            yield url
    else:
        yield databases.sqlite_url(databases.migrated_sqlite(tmp_path / "loom.db"))


def process(db_url: str, home: Path) -> wiring.Services:
    """The services one server process builds from its settings."""
    settings = config.load_settings(
        home=home,
        database={"url": db_url},
        flows={"seed_from": str(EXAMPLES)},
        sandbox={"backend": "process"},
        proposals={
            "author_revisions_per_hour": REVISIONS,
            "author_bytes_per_hour": HOURLY_BYTES,
        },
    )
    return wiring.build_services(settings)


def spec(n: int, *, padding: int = 0) -> str:
    return BAD_SPEC + f"# {n}\n" + ("# " + "x" * padding + "\n" if padding else "")


async def propose(services: wiring.Services, author: str, text: str) -> Any:
    return await services.proposals.open(
        title="change", author=author, specs=[text], run_checks=False
    )


async def test_an_author_who_spent_the_budget_in_one_process_is_refused_by_another(
    db_url: str, tmp_path: Path
) -> None:
    first, second = process(db_url, tmp_path / "one"), process(db_url, tmp_path / "two")
    try:
        for n in range(REVISIONS):
            await propose(first, "ann", spec(n))
        with pytest.raises(AuthorQuotaExceeded) as refused:
            await propose(second, "ann", spec(99))
        assert refused.value.fields["retry_after"] > 3000  # the first spend is seconds old
        assert f"{REVISIONS} revisions" in refused.value.message
        await propose(second, "bob", spec(1))  # another author has a budget of their own
    finally:
        await first.stop()
        await second.stop()


async def test_the_bytes_one_process_charged_count_in_another(db_url: str, tmp_path: Path) -> None:
    first, second = process(db_url, tmp_path / "one"), process(db_url, tmp_path / "two")
    try:
        await propose(first, "cat", spec(1, padding=700))
        with pytest.raises(AuthorQuotaExceeded) as refused:
            await propose(second, "cat", spec(2, padding=300))  # 700 + 300 + specs > 1000
        assert "bytes" in refused.value.message
        await propose(second, "cat", spec(3))  # what is left of the budget still passes
    finally:
        await first.stop()
        await second.stop()


async def test_a_restarted_process_still_refuses_an_author_over_the_budget(
    db_url: str, tmp_path: Path
) -> None:
    before = process(db_url, tmp_path / "home")
    try:
        for n in range(REVISIONS):
            await propose(before, "dan", spec(n))
    finally:
        await before.stop()
    after = process(db_url, tmp_path / "home")  # the same settings, a new process
    try:
        with pytest.raises(AuthorQuotaExceeded):
            await propose(after, "dan", spec(99))
    finally:
        await after.stop()


async def test_concurrent_charges_from_two_processes_take_the_last_unit_once(
    db_url: str,
) -> None:
    """Check and charge are one step: of eight requests racing for the last revision of the
    hour, through two connection pools, exactly one is charged."""
    now = datetime.now(UTC)
    since = now - timedelta(hours=1)
    dbs = [session.Database(db_url), session.Database(db_url)]
    stores = [SqlProposalStore(db) for db in dbs]

    def admit(spent: Spending) -> None:
        if spent.revisions >= 2:
            raise AuthorQuotaExceeded(author="eve", used="2 revisions", limit=2, retry_after=1)

    try:
        await stores[0].charge("eve", 10, at=now, since=since, admit=admit)

        async def attempt(n: int) -> bool:
            try:
                await stores[n % 2].charge("eve", 10, at=now, since=since, admit=admit)
            except AuthorQuotaExceeded:
                return False
            return True

        charged = await asyncio.gather(*(attempt(n) for n in range(8)))
        assert sum(charged) == 1, charged
        seen: list[Spending] = []
        await stores[1].charge("eve", 0, at=now, since=since, admit=seen.append)
        assert (seen[0].revisions, seen[0].bytes) == (2, 20)
        # An hour later none of it counts.
        later = now + timedelta(hours=1, seconds=1)
        seen.clear()
        await stores[0].charge("eve", 5, at=later, since=later - timedelta(hours=1),
                               admit=seen.append)  # fmt: skip
        assert (seen[0].revisions, seen[0].bytes, seen[0].oldest) == (0, 0, None)
    finally:
        for db in dbs:
            await db.dispose()

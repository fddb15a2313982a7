"""What the real ``loom server``, ``loom worker`` and ``loom scheduler`` say on a database that
is not at the code's migration revision: one line naming both revisions and the command to run,
never a SQLAlchemy traceback (on PostgreSQL, where nothing migrates by itself, and on SQLite).
``loom server --migrate`` migrates first and serves."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from linkloom.store import session
from tests.support import databases
from tests.support.servers import free_port

HEAD = session.head_revision()
LOOM = [sys.executable, "-m", "linkloom"]


def env_for(url: str, home: Path, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_DATABASE__URL": url,
        "LOOM_HOME": str(home),
        "LOOM_SERVER__PORT": str(port),
        "LOOM_SERVER__AUTH": "true",
        "LOOM_LOG__FORMAT": "console",
        "HOME": str(home),  # the CLI config the first start writes
    }


def run_to_exit(args: list[str], env: dict[str, str], within: float = 60) -> tuple[int, str]:
    """Run a process that must stop by itself; its exit status and what it printed."""
    try:
        done = subprocess.run(
            [*LOOM, *args], env=env, capture_output=True, text=True, timeout=within
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"loom {' '.join(args)} kept running: {exc.stderr!r}") from exc
    return done.returncode, done.stdout + done.stderr


def assert_says_upgrade(status: int, output: str, current: str) -> None:
    assert status != 0, output
    assert "Traceback" not in output, output
    assert "sqlalchemy" not in output.lower(), output
    assert f"the database is at revision {current}, the code needs {HEAD}" in output.lower()
    assert "loom db upgrade" in output
    assert len(output.strip().splitlines()) <= 3, output


@pytest.fixture
def empty_pg() -> Iterator[str]:
    with databases.fresh_database("startup") as url:
        yield url


@pytest.fixture
def old_pg() -> Iterator[str]:
    """A database one migration behind the code."""
    with databases.fresh_database("startup_old") as url:
        import asyncio

        previous = f"{int(HEAD or '1') - 1:04d}"
        asyncio.run(session.upgrade(url, previous))
        yield url


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["server"], ["worker"], ["scheduler"]])
def test_an_empty_postgres_database_is_named_not_a_traceback(
    command: list[str], empty_pg: str, tmp_path: Path
) -> None:
    status, output = run_to_exit(command, env_for(empty_pg, tmp_path, free_port()))
    assert_says_upgrade(status, output, "none (an empty database)")


@pytest.mark.postgres
def test_a_postgres_database_behind_the_code_names_both_revisions(
    old_pg: str, tmp_path: Path
) -> None:
    previous = f"{int(HEAD or '1') - 1:04d}"
    status, output = run_to_exit(["server"], env_for(old_pg, tmp_path, free_port()))
    assert_says_upgrade(status, output, previous)


@pytest.mark.postgres
def test_server_migrate_upgrades_an_empty_postgres_database_and_serves(
    empty_pg: str, tmp_path: Path
) -> None:
    port = free_port()
    serving(["server", "--migrate"], env_for(empty_pg, tmp_path, port), port)
    import asyncio

    assert asyncio.run(session.current_revision(empty_pg)) == HEAD


def test_sqlite_newer_than_the_code_is_named_not_a_traceback(tmp_path: Path) -> None:
    db = databases.migrated_sqlite(tmp_path / "loom.db")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    status, output = run_to_exit(
        ["server"], env_for(databases.sqlite_url(db), tmp_path, free_port())
    )
    assert status != 0, output
    assert "Traceback" not in output, output
    assert f"The database is at revision 9999, which this code does not know (it needs {HEAD})" in (
        output
    )


@pytest.mark.parametrize("command", [["server"], ["worker"], ["scheduler"]])
def test_an_empty_sqlite_file_is_migrated_on_start(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "loom.db"
    db.touch()
    port = free_port()
    env = env_for(databases.sqlite_url(db), tmp_path, port)
    if command == ["server"]:
        serving(command, env, port)
    else:
        running_for(command, env, until=lambda: sqlite_revision(db) == HEAD)
    assert sqlite_revision(db) == HEAD


def sqlite_revision(db: Path) -> str | None:
    with sqlite3.connect(db) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # not migrated (yet)
            return None
    return row[0] if row else None


def serving(args: list[str], env: dict[str, str], port: int, within: float = 60) -> None:
    """Start ``loom server``; wait until ``/readyz`` says the migrations are current; stop it."""
    process = subprocess.Popen(
        [*LOOM, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"loom {' '.join(args)} exited: {process.stdout.read()}")  # type: ignore[union-attr]
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            assert ready["checks"]["migrations"] is True, ready
            return
        raise AssertionError(f"loom {' '.join(args)} did not answer /readyz in {within}s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def running_for(
    args: list[str],
    env: dict[str, str],
    *,
    seconds: float = 4,
    until: Callable[[], bool] | None = None,
    within: float = 60,
) -> None:
    """Start a process that runs until stopped; it must still run, quietly, after ``seconds``
    and once ``until`` holds (waited for up to ``within`` seconds: a loaded machine is slow)."""
    process = subprocess.Popen(
        [*LOOM, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        time.sleep(seconds)
        deadline = time.monotonic() + within
        while until is not None and not until() and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.2)
        assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output, output

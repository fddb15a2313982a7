"""Database engines, SQLite tuning, and migrating on start.

``Database`` holds two async engines over one URL: ``writer`` for write transactions and
``reader`` for reads. On SQLite the writer starts every transaction with ``BEGIN IMMEDIATE``
(the SQLAlchemy pysqlite "begin" recipe) and has ONE pooled connection, so writers queue in
the pool instead of failing with "database is locked"; readers use WAL snapshots and never
block. Connections get ``journal_mode=WAL``, ``busy_timeout=5000``, ``synchronous=NORMAL`` and
``foreign_keys=ON``. On PostgreSQL both engines are the same pool (psycopg 3).

The engine's hot transactions (``run_hot_write``: creating a run, a batch of completions with
the claims of the next steps) run on SQLite on a bare pysqlite connection that the writer
thread owns: ``BEGIN IMMEDIATE`` and ``COMMIT`` on the connection itself, without SQLAlchemy's
pool checkout, transaction bookkeeping and events (~0.15-0.3 ms of a ~0.5 ms transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from linkloom.errors import InvalidInput, Unavailable
from linkloom.store.raw import BareConnection
from linkloom.store.raw import Conn as HotConn

T = TypeVar("T")
F = TypeVar("F")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def normalize_url(url: str) -> str:
    """Pick the async driver for plain ``sqlite://`` and ``postgresql://`` URLs."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


def utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _sqlite_listeners(engine: Any, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str, *, immediate: bool = True, **kwargs: Any) -> AsyncEngine:
    """Create an async engine; on SQLite apply the pragmas and (optionally) BEGIN IMMEDIATE."""
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        kwargs.setdefault("pool_pre_ping", True)
        return create_async_engine(url, **kwargs)
    _ensure_sqlite_dir(url)
    engine = create_async_engine(url, **kwargs)
    _sqlite_listeners(engine.sync_engine, immediate=immediate)
    return engine


def create_sync_sqlite_engine(url: str, *, immediate: bool, **kwargs: Any) -> sa.Engine:
    """A plain pysqlite engine (used from the store's own threads: one thread hop per
    transaction instead of one per statement)."""
    url = normalize_url(url).replace("sqlite+aiosqlite://", "sqlite://", 1)
    _ensure_sqlite_dir(url)
    engine = sa.create_engine(url, **kwargs)
    _sqlite_listeners(engine, immediate=immediate)
    return engine


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


class _BareWriter:
    """The writer thread's own pysqlite connection for the hot transactions.

    Taken from the writer engine's pool once (so it got the same pragmas, ``isolation_level =
    None`` and SQLAlchemy's dialect set-up) and detached from it; used and closed on the
    writer thread only. Each transaction is ``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on
    any error), and a failing ``BEGIN``/``COMMIT`` raises SQLAlchemy's error types, as through
    the engine. A connection whose rollback fails is closed, and the next transaction opens
    another."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._conn: BareConnection | None = None

    def _connect(self) -> BareConnection:
        proxied = self._engine.raw_connection()
        proxied.detach()
        dbapi = proxied.dbapi_connection
        assert isinstance(dbapi, sqlite3.Connection)
        return BareConnection(dbapi, self._engine.dialect)

    def run(self, fn: Callable[[HotConn], T]) -> T:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect()
        dbapi = conn.dbapi
        try:
            dbapi.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error("BEGIN IMMEDIATE", exc) from exc
        try:
            result = fn(conn)
            try:
                dbapi.commit()
            except sqlite3.Error as exc:
                raise self._error("COMMIT", exc) from exc
        except BaseException:
            try:
                dbapi.rollback()
            except sqlite3.Error:
                self.close()
            raise
        return result

    def _error(self, sql: str, exc: sqlite3.Error) -> sa.exc.StatementError:
        return sa.exc.DBAPIError.instance(sql, (), exc, sqlite3.Error, dialect=self._engine.dialect)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.dbapi.close()


class Database:
    """The engines of one database. Create with a URL; ``await dispose()`` at shutdown.

    ``begin()``/``read()`` give async connections. ``run_write(fn)``/``run_read(fn)`` run a
    synchronous ``fn(connection)`` as one transaction: on SQLite in the store's own threads
    (one serial writer thread, a few reader threads) over pysqlite, on PostgreSQL through
    ``run_sync`` on the async connection. The run store uses the latter: far fewer thread
    hops per transaction than aiosqlite's one per statement.
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._bare: _BareWriter | None = None
        if self.dialect == "sqlite":
            self.writer = create_engine(
                self.url, immediate=True, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60
            )
            self.reader = create_engine(self.url, immediate=False, echo=echo, pool_size=pool_size)
            readers = 4
            self.sync_writer = create_sync_sqlite_engine(
                self.url, immediate=True, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60
            )
            self.sync_reader = create_sync_sqlite_engine(
                self.url, immediate=False, echo=echo, pool_size=readers, max_overflow=0
            )
            self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="loom-db-write")
            self._bare = _BareWriter(self.sync_writer)
            self._read_pool = ThreadPoolExecutor(readers, thread_name_prefix="loom-db-read")
        else:
            self.writer = create_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size
            )
            self.reader = self.writer

    # Every way in translates a value the database refuses (sa.exc.DataError: a NUL character in
    # text on PostgreSQL, a number out of range) into UnstorableValue, a 422, not a 500.

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (committed on success, rolled back on error)."""
        try:
            async with self.writer.begin() as conn:
                yield conn
        except sa.exc.DataError as exc:
            raise UnstorableValue() from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (a consistent snapshot)."""
        try:
            async with self.reader.connect() as conn:
                yield conn
        except sa.exc.DataError as exc:
            raise UnstorableValue() from exc

    async def run_write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn(connection)`` in one write transaction."""
        try:
            if self._write_pool is not None:
                return await self._in_thread(self._write_pool, self._sync_write, fn)
            async with self.writer.begin() as conn:
                written: T = await conn.run_sync(fn)
                return written
        except sa.exc.DataError as exc:
            raise UnstorableValue() from exc

    async def run_hot_write(self, fn: Callable[[HotConn], T]) -> T:
        """Run ``fn(connection)`` in one write transaction, like ``run_write``; on SQLite on the
        writer thread's bare pysqlite connection (``fn`` may only run ``raw.Statement``s)."""
        if self._write_pool is None:
            return await self.run_write(fn)
        try:
            return await self._in_thread(self._write_pool, self._sync_hot_write, fn)
        except sa.exc.DataError as exc:
            raise UnstorableValue() from exc

    async def run_read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn(connection)`` in one read transaction."""
        try:
            if self._read_pool is not None:
                return await self._in_thread(self._read_pool, self._sync_read, fn)
            async with self.reader.connect() as conn:
                read: T = await conn.run_sync(fn)
                return read
        except sa.exc.DataError as exc:
            raise UnstorableValue() from exc

    @staticmethod
    async def _in_thread(pool: ThreadPoolExecutor, runner: Callable[[F], T], fn: F) -> T:
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, context.run, runner, fn)

    def _sync_write(self, fn: Callable[[sa.Connection], T]) -> T:
        with self.sync_writer.begin() as conn:
            return fn(conn)

    def _sync_hot_write(self, fn: Callable[[HotConn], T]) -> T:
        assert self._bare is not None
        return self._bare.run(fn)

    def _sync_read(self, fn: Callable[[sa.Connection], T]) -> T:
        with self.sync_reader.connect() as conn:
            return fn(conn)

    async def ping(self) -> bool:
        try:
            async with self.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        if self._write_pool is not None and self._bare is not None:
            # Closed on the writer thread after the writes already queued there (FIFO), which
            # still need the connection: a completion queued at shutdown is written, not lost.
            with contextlib.suppress(RuntimeError):  # the pool is already shut down
                await asyncio.get_running_loop().run_in_executor(self._write_pool, self._bare.close)
            self._bare = None
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
        for pool in (self._write_pool, self._read_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        if self.dialect == "sqlite":
            self.sync_writer.dispose()
            self.sync_reader.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    # Alembic's default stdout is the sys.stdout of the moment alembic.config was imported
    # (a test runner's capture, since closed, when a CLI test imported it first): name it.
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (the embedded server calls this on start)."""
    from alembic import command

    cfg = alembic_config(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:

            def _run(sync_conn: Any) -> None:
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            await conn.run_sync(_run)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The database's current migration revision (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.walk_revisions()}


class UnstorableValue(InvalidInput):
    """A value cannot be stored or looked up: text with a NUL character, or a number out of
    range."""

    code = "unstorable_value"


class DatabaseNotMigrated(Unavailable):
    """The database is at revision {current}, the code needs {needed}: run 'loom db upgrade'
    (or start the server with 'loom server --migrate')."""

    code = "database_not_migrated"


class DatabaseTooNew(Unavailable):
    """The database is at revision {current}, which this code does not know (it needs
    {needed}): a newer Link Loom migrated it; run that version, or restore a backup."""

    code = "database_too_new"


async def require_current(url: str, *, migrate: bool = False) -> None:
    """Migrate to head when ``migrate``; then raise ``DatabaseNotMigrated`` (or
    ``DatabaseTooNew``) unless the database at ``url`` is at the code's head revision. The
    processes call this before their first query, so a database that is not migrated says what
    to run instead of failing on a missing table."""
    needed = head_revision()
    current = await current_revision(url)
    if current is not None and current != needed and current not in known_revisions():
        raise DatabaseTooNew(current=current, needed=needed)
    if migrate and current != needed:
        await upgrade(url)
        current = await current_revision(url)
    if current != needed:
        raise DatabaseNotMigrated(current=current or "none (an empty database)", needed=needed)

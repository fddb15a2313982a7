"""``Statement``: a statement of the engine's hot path, run on the pysqlite cursor on SQLite.

SQLAlchemy Core spends ~50 µs per statement executing a cached statement on SQLite (an execution
context, parameter dicts, a result object), three to four times what SQLite itself takes. A
``Statement`` compiles its Core statement once per dialect and set of parameter names and keeps
what SQLAlchemy would use: the SQL text, the order of the positional parameters, the bind
processors (JSON encoding, datetimes as text, booleans as integers) and the result processors.
On SQLite it then executes on the connection's own DBAPI cursor inside the same transaction;
errors come out as SQLAlchemy's (``IntegrityError``, ``DataError``, …) exactly as through
``Connection.execute``. On PostgreSQL it is ``Connection.execute`` unchanged.

A ``Statement`` runs on a SQLAlchemy ``Connection`` or on a ``BareConnection``: the pysqlite
connection that the store's writer thread owns for the engine's hot transactions
(``Database.run_hot_write``), with no SQLAlchemy connection around it at all.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

Params = Mapping[str, Any]


class BareConnection:
    """A pysqlite connection in a transaction its owner began itself (``BEGIN IMMEDIATE`` on
    the store's writer thread), and the SQLite dialect its statements are compiled for: all
    that a ``Statement`` needs of a connection."""

    __slots__ = ("dbapi", "dialect")

    def __init__(self, dbapi: sqlite3.Connection, dialect: sa.Dialect) -> None:
        self.dbapi = dbapi
        self.dialect = dialect


Conn = sa.Connection | BareConnection
Core = sa.Select[Any] | sa.Insert | sa.Update
_Processor = Callable[[Any], Any] | None


class _Compiled:
    __slots__ = ("binds", "processors", "row", "sql")

    def __init__(self, statement: Core, dialect: sa.Dialect, keys: Sequence[str]) -> None:
        column_keys = list(keys) if isinstance(statement, sa.Insert) else None
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        assert compiled.positiontup is not None  # pysqlite's paramstyle is qmark
        self.sql: str = compiled.string
        bind_processors = compiled._bind_processors
        self.binds: list[tuple[str, _Processor]] = []
        for name in compiled.positiontup:
            process = bind_processors.get(name)
            # A sequence of processors is for tuple-valued parameters, which none of ours is.
            assert process is None or callable(process), name
            self.binds.append((name, process))
        result_columns = compiled._result_columns
        self.processors: list[_Processor] = [
            column.type._cached_result_processor(dialect, None) for column in result_columns
        ]
        self.row: Any = (
            namedtuple("Row", [column.keyname for column in result_columns], rename=True)
            if result_columns
            else None
        )

    def bind(self, params: Params) -> tuple[Any, ...]:
        return tuple(
            params[name] if process is None else process(params[name])
            for name, process in self.binds
        )

    def rows(self, found: Iterable[Sequence[Any]]) -> list[Any]:
        make, processors = self.row._make, self.processors
        return [
            make([v if p is None else p(v) for p, v in zip(processors, raw, strict=True)])
            for raw in found
        ]


class Statement:
    """A Core statement with bound parameters (``sa.bindparam`` names, or an INSERT's column
    names), executed on SQLite without SQLAlchemy's per-execution machinery."""

    def __init__(self, statement: Core) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def _for(self, conn: Conn, params: Params) -> _Compiled:
        keys = tuple(params)
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _Compiled(self.statement, conn.dialect, keys)
        return compiled

    def execute(self, conn: Conn, params: Params) -> None:
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            conn.execute(self.statement, params)
            return
        compiled = self._for(conn, params)
        self._run(conn, compiled, compiled.bind(params), many=False).close()

    def executemany(self, conn: Conn, params: Sequence[Params]) -> None:
        if not params:
            return
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            conn.execute(self.statement, list(params))
            return
        compiled = self._for(conn, params[0])
        if any(tuple(p) != tuple(params[0]) for p in params):
            raise ValueError("every parameter set of one executemany names the same keys")
        self._run(conn, compiled, [compiled.bind(p) for p in params], many=True).close()

    def all(self, conn: Conn, params: Params) -> list[Any]:
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            return list(conn.execute(self.statement, params).all())
        compiled = self._for(conn, params)
        cursor = self._run(conn, compiled, compiled.bind(params), many=False)
        try:
            return compiled.rows(cursor.fetchall())
        finally:
            cursor.close()

    def first(self, conn: Conn, params: Params) -> Any:
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            return conn.execute(self.statement, params).first()
        compiled = self._for(conn, params)
        cursor = self._run(conn, compiled, compiled.bind(params), many=False)
        try:
            raw = cursor.fetchone()
        finally:
            cursor.close()
        return None if raw is None else compiled.rows((raw,))[0]

    @staticmethod
    def _run(conn: Conn, compiled: _Compiled, bound: Any, *, many: bool) -> Any:
        cursor: Any
        if type(conn) is BareConnection:
            cursor = conn.dbapi.cursor()
        else:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if many:
                cursor.executemany(compiled.sql, bound)
            else:
                cursor.execute(compiled.sql, bound)
        except sqlite3.Error as exc:
            cursor.close()
            raise sa.exc.DBAPIError.instance(
                compiled.sql, bound, exc, sqlite3.Error, dialect=conn.dialect
            ) from exc
        return cursor

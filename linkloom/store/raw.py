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

import operator
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


def _getter(names: Sequence[str]) -> Callable[[Params], tuple[Any, ...]]:
    """``params`` → the tuple of their values in ``names``' order."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    if names:
        name = names[0]
        return lambda params: (params[name],)
    return lambda params: ()


def _binder(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` with ``None`` answered from a cache: a bind processor is a function of its
    value, and most values of a completion's JSON columns are ``None`` (stored as ``null``)."""
    none = process(None)
    return lambda value: none if value is None else process(value)


def _reader(column_type: Any, process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A result processor, with the JSON documents a completion's rows are full of decoded
    without the decoder: ``null`` is ``None`` and ``{}`` an empty dict, as ``json.loads``
    says."""
    if not isinstance(column_type, sa.JSON):
        return process

    def read(value: Any) -> Any:
        if value == "null":
            return None
        if value == "{}":
            return {}
        return process(value)

    return read


def _key(name: str, prefix: str) -> str:
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


class _Compiled:
    __slots__ = ("binds", "getter", "processors", "row", "sql")

    def __init__(
        self, statement: Core, dialect: sa.Dialect, keys: Sequence[str], prefix: str
    ) -> None:
        column_keys = list(keys) if isinstance(statement, sa.Insert) else None
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        assert compiled.positiontup is not None  # pysqlite's paramstyle is qmark
        self.sql: str = compiled.string
        bind_processors = compiled._bind_processors
        self.getter = _getter([_key(name, prefix) for name in compiled.positiontup])
        # (position, processor) of the parameters that have one.
        self.binds: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(compiled.positiontup):
            process = bind_processors.get(name)
            # A sequence of processors is for tuple-valued parameters, which none of ours is.
            assert process is None or callable(process), name
            if process is not None:
                self.binds.append((index, _binder(process)))
        # (position, processor) of the result columns that have one; every result processor
        # of ours reads SQL NULL as None, so NULLs skip it.
        self.processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(compiled._result_columns):
            process = column.type._cached_result_processor(dialect, None)
            if process is not None:
                assert process(None) is None, column.keyname
                self.processors.append((index, _reader(column.type, process)))
        self.row: Any = (
            namedtuple("Row", [c.keyname for c in compiled._result_columns], rename=True)
            if compiled._result_columns
            else None
        )

    def bind(self, params: Params) -> Sequence[Any]:
        values = self.getter(params)
        if not self.binds:
            return values
        bound = list(values)
        for index, process in self.binds:
            bound[index] = process(bound[index])
        return bound

    def rows(self, found: Iterable[Sequence[Any]]) -> list[Any]:
        make, processors = self.row._make, self.processors
        made = []
        for raw in found:
            values = list(raw)
            for index, process in processors:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            made.append(make(values))
        return made


class Statement:
    """A Core statement with bound parameters (``sa.bindparam`` names, or an INSERT's column
    names), executed on SQLite without SQLAlchemy's per-execution machinery.

    With a ``prefix``, a parameter ``sa.bindparam(prefix + key)`` takes the value of ``key``:
    an UPDATE's ``SET status = :b_status`` (a bindparam may not take a column's name there)
    takes ``status`` of the same dict of values an INSERT takes."""

    def __init__(self, statement: Core, *, prefix: str = "") -> None:
        self.statement = statement
        self._prefix = prefix
        self._compiled: dict[tuple[str, ...], _Compiled] = {}
        self._names: list[tuple[str, str]] | None = None

    def _core(self, params: Params) -> Params:
        """PostgreSQL: ``params`` under SQLAlchemy's parameter names."""
        if not self._prefix:
            return params
        if self._names is None:
            names = self.statement.compile().binds
            self._names = [(name, _key(name, self._prefix)) for name in names]
        return {name: params[key] for name, key in self._names if key in params}

    def _for(self, conn: Conn, params: Params) -> _Compiled:
        keys = tuple(params)
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _Compiled(
                self.statement, conn.dialect, keys, self._prefix
            )
        return compiled

    def execute(self, conn: Conn, params: Params) -> None:
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            conn.execute(self.statement, self._core(params))
            return
        compiled = self._for(conn, params)
        self._run(conn, compiled, compiled.bind(params), many=False).close()

    def executemany(self, conn: Conn, params: Sequence[Params]) -> None:
        if not params:
            return
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            conn.execute(self.statement, [self._core(p) for p in params])
            return
        compiled = self._for(conn, params[0])
        if any(tuple(p) != tuple(params[0]) for p in params):
            raise ValueError("every parameter set of one executemany names the same keys")
        self._run(conn, compiled, [compiled.bind(p) for p in params], many=True).close()

    def all(self, conn: Conn, params: Params) -> list[Any]:
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            return list(conn.execute(self.statement, self._core(params)).all())
        compiled = self._for(conn, params)
        cursor = self._run(conn, compiled, compiled.bind(params), many=False)
        try:
            return compiled.rows(cursor.fetchall())
        finally:
            cursor.close()

    def first(self, conn: Conn, params: Params) -> Any:
        if conn.dialect.name != "sqlite":
            assert isinstance(conn, sa.Connection)
            return conn.execute(self.statement, self._core(params)).first()
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

"""De-duplication of task deliveries by their ``Idempotency-Key``.

Link Loom delivers each step at least once, with a key that is stable across retries and
re-deliveries of the same step (``<run_id>:<step_id>[:<index>]``). A backend that keeps the
replies it gave can make the step's effect happen exactly once: a repeated key gets the stored
reply and the handler does not run again.

Contract of an ``IdempotencyStore`` (methods are synchronous and quick; both adapters call them):

* ``claim(key, ttl=)`` marks the key in flight and returns True, or returns False when a reply is
  stored or another delivery holds a live claim. A claim older than ``ttl`` seconds is considered
  abandoned (the process died mid-work) and can be taken over; the SQLite store also takes over
  at once a claim whose process no longer exists.
* ``put(key, reply)`` stores the final reply and ends the claim. Only successful replies are
  stored by the dispatcher: a failed attempt is retried by the server with the same key and must
  run the handler again.
* ``release(key)`` ends the claim without storing anything.
* ``get(key)`` returns the stored reply or None.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

DEFAULT_RETENTION = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An HTTP reply to send back to the Link Loom server."""

    status_code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class IdempotencyStore(Protocol):
    def get(self, key: str) -> Reply | None: ...

    def claim(self, key: str, *, ttl: float) -> bool: ...

    def put(self, key: str, reply: Reply) -> None: ...

    def release(self, key: str) -> None: ...


class InMemoryIdempotencyStore:
    """Replies kept in a dict: right for tests and single-process backends that may forget on
    restart."""

    def __init__(self, *, retention: float = DEFAULT_RETENTION) -> None:
        self._retention = retention
        self._done: dict[str, tuple[float, Reply]] = {}
        self._claims: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Reply | None:
        with self._lock:
            entry = self._done.get(key)
            if entry is None:
                return None
            if entry[0] + self._retention < time.time():
                del self._done[key]
                return None
            return entry[1]

    def claim(self, key: str, *, ttl: float) -> bool:
        now = time.time()
        with self._lock:
            entry = self._done.get(key)
            if entry is not None and entry[0] + self._retention >= now:
                return False
            held_until = self._claims.get(key)
            if held_until is not None and held_until > now:
                return False
            self._claims[key] = now + ttl
            return True

    def put(self, key: str, reply: Reply) -> None:
        with self._lock:
            self._claims.pop(key, None)
            self._done[key] = (time.time(), reply)

    def release(self, key: str) -> None:
        with self._lock:
            self._claims.pop(key, None)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS loom_idempotency (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,            -- 'inflight' or 'done'
    claimed_until REAL,
    owner_pid INTEGER,              -- the process holding an in-flight claim
    stored_at REAL,
    status_code INTEGER,
    body TEXT,
    headers TEXT
)
"""


class SqliteIdempotencyStore:
    """Replies kept in a SQLite file (standard library only): survives restarts and is shared by
    every process of a backend on one machine.

    An in-flight claim records the claiming process; when that process is gone (the backend
    crashed or restarted mid-work) the claim is taken over at once instead of after its TTL.
    """

    def __init__(self, path: str | Path, *, retention: float = DEFAULT_RETENTION) -> None:
        self.path = Path(path)
        self._retention = retention
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._purge()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, key: str) -> Reply | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status_code, body, headers, stored_at FROM loom_idempotency "
                "WHERE key = ? AND state = 'done'",
                (key,),
            ).fetchone()
        if row is None or row[3] + self._retention < time.time():
            return None
        return Reply(status_code=row[0], body=json.loads(row[1]), headers=json.loads(row[2]))

    def claim(self, key: str, *, ttl: float) -> bool:
        now = time.time()
        with self._lock:
            # BEGIN IMMEDIATE takes the write lock first, so two processes cannot both claim.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT state, claimed_until, stored_at, owner_pid FROM loom_idempotency "
                    "WHERE key = ?",
                    (key,),
                ).fetchone()
                if row is not None:
                    state, claimed_until, stored_at, owner_pid = row
                    if state == "done" and stored_at + self._retention >= now:
                        self._db.execute("COMMIT")
                        return False
                    if state == "inflight" and claimed_until > now and _alive(owner_pid):
                        self._db.execute("COMMIT")
                        return False
                self._db.execute(
                    "INSERT INTO loom_idempotency (key, state, claimed_until, owner_pid) "
                    "VALUES (?, 'inflight', ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "state = 'inflight', claimed_until = excluded.claimed_until, "
                    "owner_pid = excluded.owner_pid, "
                    "stored_at = NULL, status_code = NULL, body = NULL, headers = NULL",
                    (key, now + ttl, os.getpid()),
                )
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def put(self, key: str, reply: Reply) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO loom_idempotency (key, state, stored_at, status_code, body, headers) "
                "VALUES (?, 'done', ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET state = 'done', "
                "claimed_until = NULL, stored_at = excluded.stored_at, "
                "status_code = excluded.status_code, body = excluded.body, "
                "headers = excluded.headers",
                (
                    key,
                    time.time(),
                    reply.status_code,
                    json.dumps(reply.body),
                    json.dumps(reply.headers),
                ),
            )

    def release(self, key: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM loom_idempotency WHERE key = ? AND state = 'inflight'", (key,)
            )

    def _purge(self) -> None:  # called once at open
        self._db.execute(
            "DELETE FROM loom_idempotency WHERE state = 'done' AND stored_at < ?",
            (time.time() - self._retention,),
        )


def _alive(pid: int | None) -> bool:
    """Whether a process with this id exists on this machine (claims from dead ones are void)."""
    if pid is None:
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists but belongs to another user
        return True
    return True

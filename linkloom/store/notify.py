"""Cross-process wake-ups: PostgreSQL ``LISTEN/NOTIFY`` on channel ``loom_work``.

A process that makes work ready calls ``notify_soon()``; every process listening wakes its
workers at once instead of at the next poll. Notifications may be lost (a listener reconnecting):
polling stays the fallback, so correctness never depends on them. On SQLite (one process) this
is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

from linkloom.store.session import Database

log = structlog.get_logger(__name__)
CHANNEL = "loom_work"


def _libpq_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


class Notifier:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.enabled = db.dialect == "postgresql"
        self._listen_task: asyncio.Task[None] | None = None
        self._send_task: asyncio.Task[None] | None = None
        self._send_conn: Any = None
        self._dirty = False

    async def start(self, *, on_wake: Callable[[], Any]) -> None:
        if not self.enabled or self._listen_task is not None:
            return
        self._listen_task = asyncio.create_task(self._listen(on_wake), name="notify-listen")

    async def _listen(self, on_wake: Callable[[], Any]) -> None:
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    _libpq_dsn(self.db.url), autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for _note in conn.notifies():
                        on_wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notify_listener_reconnecting", error=str(exc))
                await asyncio.sleep(1.0)

    def notify_soon(self) -> None:
        """Send one NOTIFY shortly (coalescing bursts)."""
        if not self.enabled:
            return
        self._dirty = True
        if self._send_task is None or self._send_task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to wake
                self._send_task = asyncio.get_running_loop().create_task(
                    self._send(), name="notify-send"
                )

    async def _send(self) -> None:
        import psycopg

        while self._dirty:
            self._dirty = False
            try:
                if self._send_conn is None or self._send_conn.closed:
                    self._send_conn = await psycopg.AsyncConnection.connect(
                        _libpq_dsn(self.db.url), autocommit=True
                    )
                await self._send_conn.execute(f"NOTIFY {CHANNEL}")
            except Exception as exc:
                log.warning("notify_failed", error=str(exc))
                self._send_conn = None
                return

    async def stop(self) -> None:
        for task in (self._listen_task, self._send_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._listen_task = self._send_task = None
        if self._send_conn is not None:
            with contextlib.suppress(Exception):
                await self._send_conn.close()
            self._send_conn = None

"""Real engine processes and fresh databases for the crash and fault tests.

``fresh_database(kind, tmp_path)`` yields the URL of an empty, migrated database: a SQLite file,
or a new PostgreSQL database (dropped afterwards; ``tests.support.databases``).
``EngineProcess`` starts ``python -m linkloom worker`` (or ``server``) with ``LOOM_*`` settings,
logs to a file, waits for its readiness line, and can be SIGKILLed or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from linkloom.store import session
from tests.support import databases

REPO_ROOT = Path(__file__).resolve().parents[3]
# Each restart would otherwise compile every module again when the environment sets
# PYTHONDONTWRITEBYTECODE (seconds per start on a busy machine); keep bytecode out of the tree.
PYCACHE = Path(tempfile.gettempdir()) / f"linkloom-proof-pycache-{os.getuid()}"
SIGNING_KEY = "proof-signing-key"


@contextlib.asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty migrated database of ``kind`` ('sqlite' or 'postgres')."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
        await session.upgrade(url)
        yield url
        return
    with databases.fresh_database("proof") as url:
        await session.upgrade(url)
        yield url


class EngineProcess:
    """One ``loom worker``/``loom server`` child process."""

    def __init__(
        self,
        *,
        command: str,
        db_url: str,
        home: Path,
        settings: dict[str, Any] | None = None,
        ready_text: str,
    ) -> None:
        self.command = command
        self.ready_text = ready_text
        self.home = home
        skip = ("LOOM_", "PYTHONDONTWRITEBYTECODE")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(skip)},
            "PYTHONPYCACHEPREFIX": str(PYCACHE),
            "LOOM_HOME": str(home),
            "LOOM_DATABASE__URL": db_url,
            "LOOM_SECURITY__SIGNING_KEY": SIGNING_KEY,
            "LOOM_LOG__LEVEL": "WARNING",
            "LOOM_LOG__FORMAT": "json",
            "PYTHONPATH": str(REPO_ROOT),
            **{k: str(v) for k, v in (settings or {}).items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = home / f"{command}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def warm(self) -> None:
        """Import the process's modules once, so the bytecode cache is filled before timing
        starts (the first compile takes tens of seconds on a busy machine)."""
        subprocess.run(
            [sys.executable, "-c", "import linkloom.cli.main, linkloom.wiring, linkloom.api.app"],
            env=self.env,
            cwd=REPO_ROOT,
            check=True,
            timeout=180,
        )

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"---- start {self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "linkloom", self.command],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, within: float = 30.0) -> None:
        """Wait until this start printed its readiness line."""
        marker = f"---- start {self.starts} at"
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            text = self.log_text()
            if self.ready_text in text[text.rfind(marker) :]:
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.command} exited early:\n{text[-3000:]}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.command} not ready in {within}s:\n{self.log_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def rss_kib(self, field: str = "VmRSS") -> int:
        """Resident memory of the process (``VmHWM``: its peak)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")


async def step_status_counts(db: session.Database) -> dict[str, int]:
    """How many step runs are in each status, over the whole database."""
    async with db.read() as conn:
        rows = (
            await conn.execute(sa.text("SELECT status, count(*) FROM step_runs GROUP BY status"))
        ).all()
    return {status: int(count) for status, count in rows}

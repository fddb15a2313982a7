"""The opaque cursor of a page of runs: the last run's creation time and id, base64-encoded.
Both run stores (SQL and in memory) page the same way."""

from __future__ import annotations

import base64
from datetime import datetime

from linkloom.engine import errors
from linkloom.engine.records import Run


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), run_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidInput(
            "invalid cursor; pass the next_cursor of a previous page"
        ) from exc

"""``SqlAuditLog``: the append-only ``audit_log`` table, newest first with an id cursor."""

from __future__ import annotations

from typing import Any

from linkloom.access import AuditEntry, AuditFilter
from linkloom.errors import InvalidInput
from linkloom.store import rows
from linkloom.store.session import Database
from linkloom.store.tables import audit_log


def _entry(row: Any) -> AuditEntry:
    at = rows.utc(row.at)
    assert at is not None
    return AuditEntry(
        id=int(row.id),
        actor=row.actor,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        details=dict(row.details or {}),
        at=at,
    )


class SqlAuditLog:
    """Writes and reads audit entries over a ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, entry: AuditEntry) -> int:
        """Append one entry; return its id."""
        async with self.db.begin() as conn:
            result = await conn.execute(
                audit_log.insert().values(
                    actor=entry.actor,
                    action=entry.action,
                    object_type=entry.object_type,
                    object_id=entry.object_id,
                    details=entry.details or {},
                    at=entry.at,
                )
            )
            key = result.inserted_primary_key
        return int(key[0]) if key else 0

    async def list(
        self, filters: AuditFilter, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[AuditEntry], str | None]:
        """Newest first; the cursor is the id of the last entry of the previous page."""
        query = audit_log.select()
        for column, value in (
            (audit_log.c.actor, filters.actor),
            (audit_log.c.action, filters.action),
            (audit_log.c.object_type, filters.object_type),
            (audit_log.c.object_id, filters.object_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if filters.since is not None:
            query = query.where(audit_log.c.at >= filters.since)
        if filters.until is not None:
            query = query.where(audit_log.c.at < filters.until)
        if cursor:
            try:
                before = int(cursor)
            except ValueError:
                raise InvalidInput(
                    "invalid cursor; pass the next_cursor of a previous page"
                ) from None
            query = query.where(audit_log.c.id < before)
        query = query.order_by(audit_log.c.id.desc()).limit(limit + 1)
        async with self.db.read() as conn:
            found = [_entry(r) for r in (await conn.execute(query)).all()]
        page = found[:limit]
        more = len(found) > limit
        return page, (str(page[-1].id) if more and page else None)

"""``SqlForgeStore``: forge webhook deliveries and pull request links (``forges.ports``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from linkloom.forges.models import ForgeKind, LinkState, PullLink, ReportState, ReportStatus
from linkloom.forges.ports import StoredDelivery
from linkloom.store import rows
from linkloom.store.session import Database
from linkloom.store.tables import forge_deliveries, forge_links


def _link_id(forge: ForgeKind, repo: str, number: int) -> str:
    return f"{forge.value}:{repo.lower()}#{number}"


def _values(link: PullLink) -> dict[str, Any]:
    return {
        "id": _link_id(link.forge, link.repo, link.number),
        "forge": link.forge.value,
        "repo": link.repo,
        "number": link.number,
        "url": link.url,
        "title": link.title,
        "author": link.author,
        "head_sha": link.head_sha,
        "head_ref": link.head_ref,
        "base_ref": link.base_ref,
        "proposal_id": link.proposal_id,
        "state": link.state.value,
        "merged_by": link.merged_by,
        "merge_commit": link.merge_commit,
        "comment_id": link.comment_id,
        "note": link.note,
        "report_status": link.report.status.value,
        "report_attempts": link.report.attempts,
        "report_next_at": link.report.next_at,
        "report_error": link.report.error,
        "report_sent": link.report.sent,
        "report_target": link.report.target,
        "created_at": link.created_at,
        "updated_at": link.updated_at,
    }


def _link(row: Any) -> PullLink:
    return PullLink(
        forge=ForgeKind(row.forge),
        repo=row.repo,
        number=int(row.number),
        url=row.url,
        title=row.title,
        author=row.author,
        head_sha=row.head_sha,
        head_ref=row.head_ref,
        base_ref=row.base_ref,
        proposal_id=row.proposal_id,
        state=LinkState(row.state),
        merged_by=row.merged_by,
        merge_commit=row.merge_commit,
        comment_id=row.comment_id,
        note=row.note or "",
        report=ReportState(
            status=ReportStatus(row.report_status),
            attempts=int(row.report_attempts or 0),
            next_at=rows.utc(row.report_next_at),
            error=row.report_error,
            sent=row.report_sent or "",
            target=row.report_target or "",
        ),
        created_at=rows.utc(row.created_at),
        updated_at=rows.utc(row.updated_at),
    )


class SqlForgeStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert

    async def record_delivery(
        self,
        *,
        keys: Sequence[str],
        forge: ForgeKind,
        event: str,
        body: bytes,
        received_at: datetime,
    ) -> bool:
        d = forge_deliveries
        values = [
            {"key": key, "forge": forge.value, "event": event, "received_at": received_at,
             "body": body if n == 0 else None}
            for n, key in enumerate(keys)
        ]  # fmt: skip
        try:
            async with self.db.begin() as conn:
                await conn.execute(d.insert(), values)  # all keys or none (a replay)
        except IntegrityError:
            return False
        return True

    async def finish_delivery(self, key: str, *, outcome: str, at: datetime) -> None:
        d = forge_deliveries
        async with self.db.begin() as conn:
            await conn.execute(
                d.update()
                .where(d.c.key == key)
                .values(finished_at=at, outcome=outcome[:2000], body=None)
            )

    async def unfinished_deliveries(self) -> list[StoredDelivery]:
        d = forge_deliveries
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    d.select()
                    .where(d.c.finished_at.is_(None), d.c.body.is_not(None))
                    .order_by(d.c.received_at)
                )
            ).all()
        return [
            StoredDelivery(
                key=r.key, forge=ForgeKind(r.forge), event=r.event, body=bytes(r.body),
                received_at=rows.utc(r.received_at),  # type: ignore[arg-type]
            )
            for r in found
        ]  # fmt: skip

    async def get_link(self, forge: ForgeKind, repo: str, number: int) -> PullLink | None:
        key = _link_id(forge, repo, number)
        async with self.db.read() as conn:
            row = (await conn.execute(forge_links.select().where(forge_links.c.id == key))).first()
        return _link(row) if row else None

    async def link_of(self, proposal_id: str) -> PullLink | None:
        f = forge_links
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    f.select().where(f.c.proposal_id == proposal_id).order_by(f.c.updated_at.desc())
                )
            ).first()
        return _link(row) if row else None

    async def save_link(self, link: PullLink) -> None:
        values = _values(link)
        insert = self._insert(forge_links).values(**values)
        upsert = insert.on_conflict_do_update(
            index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"}
        )
        async with self.db.begin() as conn:
            await conn.execute(upsert)

    async def links(self, *, open_only: bool = True) -> list[PullLink]:
        f = forge_links
        query = f.select().order_by(f.c.updated_at)
        if open_only:
            query = query.where(f.c.state == LinkState.OPEN.value)
        async with self.db.read() as conn:
            return [_link(r) for r in (await conn.execute(query)).all()]

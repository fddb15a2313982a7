"""Queries on ``flows`` and ``flow_versions`` (synchronous; run inside ``SqlRunStore``'s
transactions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from linkloom.engine import errors
from linkloom.engine.records import Flow, FlowVersion
from linkloom.store import rows
from linkloom.store.tables import flow_versions, flows


def save_version(
    conn: sa.Connection,
    *,
    pg: bool,
    flow_id: str,
    name: str | None,
    spec: dict[str, Any],
    content_hash: str,
    source: str,
    actor: str | None,
    git_commit: str | None,
    now: datetime,
) -> tuple[FlowVersion, bool]:
    query = flows.select().where(flows.c.id == flow_id)
    if pg:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is not None and row.deleted_at is None:
        current = get_version(conn, flow_id, row.current_version)
        if current is not None and current.content_hash == content_hash:
            return current, False
    latest = conn.execute(
        sa.select(sa.func.max(flow_versions.c.version)).where(flow_versions.c.flow_id == flow_id)
    ).scalar()
    number = (latest or 0) + 1
    if row is None:
        conn.execute(
            flows.insert().values(
                id=flow_id,
                name=name,
                current_version=number,
                paused=False,
                created_at=now,
                updated_at=now,
            )
        )
    version = FlowVersion(
        flow_id=flow_id,
        version=number,
        spec=spec,
        content_hash=content_hash,
        source=source,
        created_by=actor,
        git_commit=git_commit,
        created_at=now,
    )
    conn.execute(
        flow_versions.insert().values(
            flow_id=flow_id,
            version=number,
            spec=spec,
            content_hash=content_hash,
            source=source,
            created_by=actor,
            git_commit=git_commit,
            created_at=now,
        )
    )
    if row is not None:
        conn.execute(
            flows.update()
            .where(flows.c.id == flow_id)
            .values(name=name, current_version=number, updated_at=now, deleted_at=None)
        )
    return version, True


def get_flow(conn: sa.Connection, flow_id: str) -> Flow | None:
    row = conn.execute(flows.select().where(flows.c.id == flow_id)).first()
    return rows.flow(row) if row else None


def list_flows(conn: sa.Connection, *, include_deleted: bool) -> list[Flow]:
    query = flows.select().order_by(flows.c.id)
    if not include_deleted:
        query = query.where(flows.c.deleted_at.is_(None))
    return [rows.flow(r) for r in conn.execute(query).all()]


def get_version(conn: sa.Connection, flow_id: str, version: int) -> FlowVersion | None:
    row = conn.execute(
        flow_versions.select().where(
            flow_versions.c.flow_id == flow_id, flow_versions.c.version == version
        )
    ).first()
    return rows.flow_version(row) if row else None


def list_versions(conn: sa.Connection, flow_id: str) -> list[FlowVersion]:
    query = (
        flow_versions.select()
        .where(flow_versions.c.flow_id == flow_id)
        .order_by(flow_versions.c.version)
    )
    return [rows.flow_version(r) for r in conn.execute(query).all()]


def update_flow(conn: sa.Connection, flow: Flow) -> None:
    result = conn.execute(
        flows.update()
        .where(flows.c.id == flow.id)
        .values(
            name=flow.name,
            current_version=flow.current_version,
            paused=flow.paused,
            updated_at=flow.updated_at,
            deleted_at=flow.deleted_at,
        )
    )
    if result.rowcount == 0:
        raise errors.FlowNotFound(flow_id=flow.id)

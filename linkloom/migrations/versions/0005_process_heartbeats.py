"""process_heartbeats: engine worker, scheduler and server processes say they are alive

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 11:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "process_heartbeats",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_process_heartbeats")),
    )
    op.create_index("ix_process_heartbeats_role_seen", "process_heartbeats", ["role", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_process_heartbeats_role_seen", table_name="process_heartbeats")
    op.drop_table("process_heartbeats")

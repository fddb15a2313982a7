"""schedule_queue: fires held back by the overlap policy 'queue'

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:55:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedule_queue",
        sa.Column("flow_id", sa.String(length=64), nullable=False),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "flow_id", "schedule_id", "fire_time", name=op.f("pk_schedule_queue")
        ),
    )


def downgrade() -> None:
    op.drop_table("schedule_queue")

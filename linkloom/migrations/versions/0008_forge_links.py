"""forge_deliveries and forge_links: pull requests on the team's git host as proposals

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 14:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "forge_deliveries",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("forge", sa.String(length=20), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column("body", sa.LargeBinary()),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("outcome", sa.Text()),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_forge_deliveries")),
    )
    op.create_index(
        "ix_forge_deliveries_unfinished", "forge_deliveries", ["finished_at", "received_at"]
    )
    op.create_table(
        "forge_links",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("forge", sa.String(length=20), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("head_sha", sa.String(length=64), nullable=False),
        sa.Column("head_ref", sa.String(length=255), nullable=False),
        sa.Column("base_ref", sa.String(length=255), nullable=False),
        sa.Column("proposal_id", sa.String(length=64)),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("merged_by", sa.String(length=200)),
        sa.Column("merge_commit", sa.String(length=64)),
        sa.Column("comment_id", sa.String(length=64)),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("report_status", sa.String(length=20), nullable=False),
        sa.Column("report_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("report_next_at", TS),
        sa.Column("report_error", sa.Text()),
        sa.Column("report_sent", sa.Text(), server_default="", nullable=False),
        sa.Column("report_target", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forge_links")),
    )
    op.create_index(op.f("ix_forge_links_proposal_id"), "forge_links", ["proposal_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_forge_links_proposal_id"), table_name="forge_links")
    op.drop_table("forge_links")
    op.drop_index("ix_forge_deliveries_unfinished", table_name="forge_deliveries")
    op.drop_table("forge_deliveries")

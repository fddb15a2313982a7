"""proposal_charges: what each author committed through proposals in the last hour

The hourly budget (``proposals.author_bytes_per_hour``, ``author_revisions_per_hour``) was kept
in each server process's memory: a restart forgot it and every replica granted it whole.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 00:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "proposal_charges",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposal_charges")),
    )
    op.create_index("ix_proposal_charges_author_at", "proposal_charges", ["author", "at"])


def downgrade() -> None:
    op.drop_index("ix_proposal_charges_author_at", table_name="proposal_charges")
    op.drop_table("proposal_charges")

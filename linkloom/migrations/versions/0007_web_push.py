"""web_push: the web app's own notifications (preferences, Web Push subscriptions and VAPID
keys, the notifications each user was sent)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 14:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "web_push_keys",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_push_keys")),
    )
    op.create_table(
        "web_push_subscriptions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("p256dh", sa.String(length=200), nullable=False),
        sa.Column("auth", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_web_push_subscriptions_endpoint")),
    )
    op.create_index(op.f("ix_web_push_subscriptions_actor"), "web_push_subscriptions", ["actor"])
    op.create_table(
        "web_notification_prefs",
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("flows", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("actor", name=op.f("pk_web_notification_prefs")),
    )
    op.create_table(
        "web_notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_notifications")),
        sa.UniqueConstraint("actor", "key", name=op.f("uq_web_notifications_actor_key")),
    )
    op.create_index("ix_web_notifications_actor_id", "web_notifications", ["actor", "id"])


def downgrade() -> None:
    op.drop_index("ix_web_notifications_actor_id", table_name="web_notifications")
    op.drop_table("web_notifications")
    op.drop_table("web_notification_prefs")
    op.drop_index(op.f("ix_web_push_subscriptions_actor"), table_name="web_push_subscriptions")
    op.drop_table("web_push_subscriptions")
    op.drop_table("web_push_keys")

"""The database schema: one SQLAlchemy Core ``Table`` per table, on one ``MetaData``.

The naming convention gives constraints the same names on SQLite and PostgreSQL, so Alembic
migrations (``linkloom/migrations``) apply to both. JSON columns are JSONB on PostgreSQL.
Timestamps are stored timezone-aware; SQLite returns them naive UTC (repositories re-attach UTC).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING)

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(64), primary_key=True)


flows = sa.Table(
    "flows",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("current_version", sa.Integer, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("deleted_at", TS),
)

flow_versions = sa.Table(
    "flow_versions",
    metadata,
    sa.Column("flow_id", sa.String(64), sa.ForeignKey("flows.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("content_hash", sa.String(80), nullable=False),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", TS, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    _id(),
    sa.Column("flow_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("trigger_info", JSON),
    sa.Column("inputs", JSON),
    sa.Column("outputs", JSON),
    sa.Column("error", JSON),
    sa.Column("schedule_id", sa.String(64)),
    sa.Column("fire_time", TS),
    sa.Column("parent_run_id", sa.String(64)),
    sa.Column("parent_step_id", sa.String(64)),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("sandbox", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("max_parallel", sa.Integer),
    # No longer written (runs are locked with SELECT … FOR NO KEY UPDATE); kept, because
    # dropping a column rebuilds the table on SQLite, and step_runs cascade from it.
    sa.Column("lock_version", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("flow_id", "schedule_id", "fire_time"),
    # Lists are newest first with a keyset cursor on (created_at, id): each filter has an
    # index ending in those two columns, so a page reads `limit` index entries at any history
    # size (migration 0006). Retention walks ix_runs_created from the oldest end.
    sa.Index("ix_runs_created", "created_at", "id"),
    sa.Index("ix_runs_flow_created", "flow_id", "created_at", "id"),
    sa.Index("ix_runs_status_created", "status", "created_at", "id"),
    sa.Index("ix_runs_flow_status_created", "flow_id", "status", "created_at", "id"),
    sa.Index("ix_runs_trigger_created", "trigger", "created_at", "id"),
    sa.Index("ix_runs_parent", "parent_run_id", "created_at", "id"),
)

step_runs = sa.Table(
    "step_runs",
    metadata,
    _id(),
    sa.Column(
        "run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("item_index", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("output", JSON),
    sa.Column("outputs", JSON),
    sa.Column("error", JSON),
    sa.Column("state", JSON),
    sa.Column("ready_at", TS),
    sa.Column("lease_owner", sa.String(120)),
    sa.Column("lease_expires_at", TS),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.UniqueConstraint("run_id", "step_id", "item_index"),
    sa.Index("ix_step_runs_status_ready", "status", "ready_at"),
    sa.Index("ix_step_runs_run", "run_id"),
    sa.Index("ix_step_runs_lease", "status", "lease_expires_at"),
)

step_attempts = sa.Table(
    "step_attempts",
    metadata,
    _id(),
    sa.Column("step_run_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("item_index", sa.Integer),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", JSON),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("duration_ms", sa.Float),
    sa.Index("ix_step_attempts_run", "run_id"),
)

exchanges = sa.Table(
    "exchanges",
    metadata,
    _id(),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("item_index", sa.Integer),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("request", JSON),
    sa.Column("response", JSON),
    sa.Column("status", sa.Integer),
    sa.Column("duration_ms", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_exchanges_run", "run_id"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("step_id", sa.String(64)),
    sa.Column("attempt", sa.Integer),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", JSON),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_run_events_run", "run_id", "id"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    _id(),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("flow_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("item_index", sa.Integer),
    sa.Column("error", JSON),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("redriven_at", TS),
    sa.Column("redrive_run_id", sa.String(64)),
    sa.Index("ix_dead_letters_flow", "flow_id", "created_at"),
    sa.Index("ix_dead_letters_created", "created_at"),
    sa.Index("ix_dead_letters_run", "run_id"),  # retention deletes a run's letters with it
)

# ---- scheduler (logic in linkloom.scheduler / store.schedules) ------------------------------
schedule_state = sa.Table(
    "schedule_state",
    metadata,
    sa.Column("flow_id", sa.String(64), primary_key=True),
    sa.Column("schedule_id", sa.String(64), primary_key=True),
    sa.Column("next_fire_time", TS),
    sa.Column("last_fire_time", TS),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Fires held back by ``overlap: queue`` until a run of the flow finishes (migration 0002).
schedule_queue = sa.Table(
    "schedule_queue",
    metadata,
    sa.Column("flow_id", sa.String(64), primary_key=True),
    sa.Column("schedule_id", sa.String(64), primary_key=True),
    sa.Column("fire_time", TS, primary_key=True),
    sa.Column("queued_at", TS, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    _id(),
    sa.Column("flow_id", sa.String(64), nullable=False),
    sa.Column("trigger_id", sa.String(64), nullable=False),
    sa.Column("delivery_key", sa.String(200), nullable=False, unique=True),
    sa.Column("received_at", TS, nullable=False),
)

# ---- forges: pull requests as proposals (migration 0008) -------------------------------------
# One row per de-duplication key of a verified webhook delivery; the first key's row keeps the
# body until the delivery is handled, so a crash in between loses nothing.
forge_deliveries = sa.Table(
    "forge_deliveries",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("forge", sa.String(20), nullable=False),
    sa.Column("event", sa.String(100), nullable=False),
    sa.Column("body", sa.LargeBinary),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("outcome", sa.Text),
    sa.Index("ix_forge_deliveries_unfinished", "finished_at", "received_at"),
)

# A pull (merge) request and the proposal it is; the state of the report on it.
forge_links = sa.Table(
    "forge_links",
    metadata,
    sa.Column("id", sa.String(300), primary_key=True),  # <forge>:<repo lower-cased>#<number>
    sa.Column("forge", sa.String(20), nullable=False),
    sa.Column("repo", sa.String(200), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("head_sha", sa.String(64), nullable=False),
    sa.Column("head_ref", sa.String(255), nullable=False),
    sa.Column("base_ref", sa.String(255), nullable=False),
    sa.Column("proposal_id", sa.String(64), index=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("merged_by", sa.String(200)),
    sa.Column("merge_commit", sa.String(64)),
    sa.Column("comment_id", sa.String(64)),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("report_status", sa.String(20), nullable=False),
    sa.Column("report_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("report_next_at", TS),
    sa.Column("report_error", sa.Text),
    sa.Column("report_sent", sa.Text, nullable=False, server_default=""),
    sa.Column("report_target", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# ---- API ------------------------------------------------------------------------------------
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_used_at", TS),
    sa.Column("revoked_at", TS),
)

# The web UI's sign-ins (``linkloom.store.web_sessions``): the cookie holds a random secret, the
# table only its hash; a session ends at expires_at, after session_idle_seconds without a
# request, at sign-out, or when its token is revoked.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    _id(),
    sa.Column("secret_hash", sa.String(128), nullable=False, unique=True),
    sa.Column(
        "token_id",
        sa.String(64),
        sa.ForeignKey("api_tokens.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False, index=True),
    sa.Column("revoked_at", TS),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("actor", sa.String(200)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(200)),
    sa.Column("details", JSON),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_audit_log_object", "object_type", "object_id"),
)

# ---- GitOps proposals -----------------------------------------------------------------------
proposals = sa.Table(
    "proposals",
    metadata,
    _id(),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("base_commit", sa.String(64)),
    sa.Column("head_commit", sa.String(64)),
    sa.Column("branch", sa.String(200)),
    sa.Column("flows", JSON),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

proposal_checks = sa.Table(
    "proposal_checks",
    metadata,
    _id(),
    sa.Column("proposal_id", sa.String(64), sa.ForeignKey("proposals.id"), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text),
    sa.Column("details", JSON),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Index("ix_proposal_checks_proposal", "proposal_id"),
)

proposal_reviews = sa.Table(
    "proposal_reviews",
    metadata,
    _id(),
    sa.Column("proposal_id", sa.String(64), sa.ForeignKey("proposals.id"), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_proposal_reviews_proposal", "proposal_id"),
)

proposal_comments = sa.Table(
    "proposal_comments",
    metadata,
    _id(),
    sa.Column("proposal_id", sa.String(64), sa.ForeignKey("proposals.id"), nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_proposal_comments_proposal", "proposal_id"),
)

# What each author committed through proposals (``ProposalStore.charge``): one row per admitted
# open or revision, kept for the hour the budget looks back (older rows of an author go when
# they charge again).
proposal_charges = sa.Table(
    "proposal_charges",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Index("ix_proposal_charges_author_at", "author", "at"),
)

# ---- notifications (``store/notifications.py``) ---------------------------------------------

notification_channels = sa.Table(
    "notification_channels",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("config", JSON, nullable=False),
    sa.Column("secrets", sa.Text),  # Fernet token of the JSON secrets; never returned as is
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

notification_rules = sa.Table(
    "notification_rules",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("flow_id", sa.String(64)),
    sa.Column("events", JSON, nullable=False),
    sa.Column("channels", JSON, nullable=False),
    sa.Column("quiet_seconds", sa.Float, nullable=False),
    sa.Column("sla_seconds", sa.Float),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    _id(),
    sa.Column("channel_id", sa.String(64), nullable=False),
    sa.Column("rule_id", sa.String(64)),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("flow_id", sa.String(64)),
    sa.Column("notification", JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("lease_until", TS),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("sent_at", TS),
    sa.UniqueConstraint("channel_id", "key"),
    sa.Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_notification_deliveries_created", "created_at"),
)

notification_attempts = sa.Table(
    "notification_attempts",
    metadata,
    sa.Column(
        "delivery_id",
        sa.String(64),
        sa.ForeignKey("notification_deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("duration_ms", sa.Float, nullable=False, server_default="0"),
    sa.Column("at", TS, nullable=False),
)

notification_quiet = sa.Table(
    "notification_quiet",
    metadata,
    sa.Column("rule_id", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(300), primary_key=True),
    sa.Column("last_sent_at", TS, nullable=False),
    sa.Column("suppressed", sa.Integer, nullable=False, server_default="0"),
)

notification_flow_health = sa.Table(
    "notification_flow_health",
    metadata,
    sa.Column("flow_id", sa.String(64), primary_key=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# ---- the web app's own notifications (``linkloom.store.webpush``) ---------------------------
web_push_keys = sa.Table(
    "web_push_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("public_key", sa.Text, nullable=False),  # base64url, uncompressed P-256 point
    sa.Column("private_key", sa.Text, nullable=False),  # Fernet token of the PEM; never returned
    sa.Column("created_at", TS, nullable=False),
)

web_push_subscriptions = sa.Table(
    "web_push_subscriptions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("actor", sa.String(200), nullable=False, index=True),
    sa.Column("endpoint", sa.String(2000), nullable=False, unique=True),
    sa.Column("p256dh", sa.String(200), nullable=False),
    sa.Column("auth", sa.String(100), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_sent_at", TS),
    sa.Column("last_error", sa.Text),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
)

web_notification_prefs = sa.Table(
    "web_notification_prefs",
    metadata,
    sa.Column("actor", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("events", JSON, nullable=False),  # PersonalEvent values the user wants
    sa.Column("flows", JSON, nullable=False),  # the flows the user watches
    sa.Column("updated_at", TS, nullable=False),
)

web_notifications = sa.Table(
    "web_notifications",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("url", sa.String(500), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("actor", "key"),
    sa.Index("ix_web_notifications_actor_id", "actor", "id"),
)

# ---- pull-mode workers (``linkloom.store.pull``) -------------------------------------------
pull_tasks = sa.Table(
    "pull_tasks",
    metadata,
    sa.Column("token", sa.String(200), primary_key=True),  # the attempt's callback token
    sa.Column("step_run_id", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("task", sa.String(200), nullable=False),
    sa.Column("envelope", JSON, nullable=False),
    sa.Column("worker_id", sa.String(200)),
    sa.Column("lease_until", TS),
    sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_pull_tasks_queue_created", "queue", "created_at"),
)

pull_workers = sa.Table(
    "pull_workers",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("queues", JSON, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | lost | stopped
    sa.Column("started_at", TS, nullable=False),
    sa.Column("last_heartbeat", TS, nullable=False),
)

# ---- process heartbeats (``linkloom.store.operations``): /readyz "workers alive" --------------
process_heartbeats = sa.Table(
    "process_heartbeats",
    metadata,
    sa.Column("id", sa.String(120), primary_key=True),  # host:pid:random, one per process
    sa.Column("role", sa.String(16), nullable=False),  # worker | scheduler
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("last_seen", TS, nullable=False),
    sa.Index("ix_process_heartbeats_role_seen", "role", "last_seen"),
)

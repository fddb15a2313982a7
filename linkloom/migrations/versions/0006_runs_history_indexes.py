"""runs: an index per list filter ending in (created_at, id); dead_letters by run and by age

Keyset pages of runs (newest first, cursor on created_at and id) read only ``limit`` index
entries whatever the history's size; retention deletes a run's dead letters through their
run_id. Building the indexes reads the whole runs table once (seconds per million runs).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 15:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = {
    "ix_runs_created": ["created_at"],
    "ix_runs_flow_created": ["flow_id", "created_at"],
    "ix_runs_status": ["status"],
    "ix_runs_parent": ["parent_run_id"],
}
_NEW = {
    "ix_runs_created": ["created_at", "id"],
    "ix_runs_flow_created": ["flow_id", "created_at", "id"],
    "ix_runs_status_created": ["status", "created_at", "id"],
    "ix_runs_flow_status_created": ["flow_id", "status", "created_at", "id"],
    "ix_runs_trigger_created": ["trigger", "created_at", "id"],
    "ix_runs_parent": ["parent_run_id", "created_at", "id"],
}


def upgrade() -> None:
    for name in _OLD:
        op.drop_index(name, table_name="runs")
    for name, columns in _NEW.items():
        op.create_index(name, "runs", columns)
    op.create_index("ix_dead_letters_created", "dead_letters", ["created_at"])
    op.create_index("ix_dead_letters_run", "dead_letters", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_run", table_name="dead_letters")
    op.drop_index("ix_dead_letters_created", table_name="dead_letters")
    for name in _NEW:
        op.drop_index(name, table_name="runs")
    for name, columns in _OLD.items():
        op.create_index(name, "runs", columns)

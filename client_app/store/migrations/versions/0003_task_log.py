"""The agent's task log: every task it admitted, by run, kind, round and nonce.

A nonce is never admitted twice (replays are refused) and the log is what the agent checks a
run's schedule against (one release per run, one evaluation per round...). Append-only; the
outcome column is set once, when the task ends.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.UniqueConstraint("nonce", name="uq_tasks_nonce"),
    )
    op.create_index("ix_tasks_run_id", "tasks", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_run_id", table_name="tasks")
    op.drop_table("tasks")

"""Initial site store: approvals, ledger, events (append-only) and settings.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_approvals_plan_hash", "approvals", ["plan_hash"])
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("study", sa.String(128), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.String(128), nullable=False),
        sa.Column("dataset_version", sa.String(128), nullable=False),
        sa.Column("noise_multiplier", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Float(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("epsilon_cumulative", sa.Float(), nullable=False),
    )
    op.create_index("ix_ledger_dataset_id", "ledger", ["dataset_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
    )
    op.create_index("ix_events_kind", "events", ["kind"])
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_index("ix_events_kind", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_ledger_dataset_id", table_name="ledger")
    op.drop_table("ledger")
    op.drop_index("ix_approvals_plan_hash", table_name="approvals")
    op.drop_table("approvals")

"""Drift checks of registered models: the coordinator's PSI and "retraining recommended".

Revision ID: 0005
Revises: 0004
Create Date: 2025-03-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drift_checks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("study", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("worst_psi", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("retraining_recommended", sa.Boolean(), nullable=False),
        sa.Column("draft_plan", sa.String(512), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
    )
    op.create_index("ix_drift_checks_study", "drift_checks", ["study"])


def downgrade() -> None:
    op.drop_index("ix_drift_checks_study", table_name="drift_checks")
    op.drop_table("drift_checks")

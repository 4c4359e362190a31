"""Initial coordinator store: the model registry.

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
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("study", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("epsilon", sa.Text(), nullable=False),
        sa.Column("lineage", sa.Text(), nullable=False),
        sa.UniqueConstraint("study", "version", name="uq_model_versions_study"),
    )


def downgrade() -> None:
    op.drop_table("model_versions")

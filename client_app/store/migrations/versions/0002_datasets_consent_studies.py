"""Dataset versions with lineage, patient consent events and received study plans.

All three tables are append-only: a new dataset version, a consent change or a received
plan is a new row, never an edit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("parent_version", sa.String(128), nullable=True),
        sa.Column("source_hash", sa.String(128), nullable=False),
        sa.Column("source_name", sa.String(256), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_index("ix_dataset_versions_dataset", "dataset_versions", ["dataset"])
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("patient_ref", sa.String(128), nullable=False),
        sa.Column("patient_sealed", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("batch", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_consent_events_patient_ref", "consent_events", ["patient_ref"])
    op.create_table(
        "study_plans",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("study", sa.String(128), nullable=False),
        sa.Column("plan_toml", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_index("ix_study_plans_study", "study_plans", ["study"])


def downgrade() -> None:
    op.drop_index("ix_study_plans_study", table_name="study_plans")
    op.drop_table("study_plans")
    op.drop_index("ix_consent_events_patient_ref", table_name="consent_events")
    op.drop_table("consent_events")
    op.drop_index("ix_dataset_versions_dataset", table_name="dataset_versions")
    op.drop_table("dataset_versions")

"""The coordinator store's tables (SQLModel) and its Alembic scripts folder.

The tables below describe what the revisions in ``versions/`` create; nothing here creates
them directly: :func:`common.sql.migrate` applies pending revisions of
:data:`MIGRATIONS_DIR` when the registry opens. The coordinator's tables have their own
metadata, apart from the site's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

#: The coordinator store's Alembic scripts folder (this one: ``env.py``, ``versions/``).
MIGRATIONS_DIR = Path(__file__).parent


class CoordinatorTable(SQLModel, registry=registry()):
    """Base of the coordinator store's tables (own metadata, apart from the site's)."""


class ModelVersionRow(CoordinatorTable, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("study", "version", name="uq_model_versions_study"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    study: str = Field(sa_type=sa.String(128))
    version: int = Field(sa_type=sa.Integer())
    plan_hash: str = Field(sa_type=sa.String(128))
    rounds: int = Field(sa_type=sa.Integer())
    sha256: str = Field(sa_type=sa.String(64))
    path: str = Field(sa_type=sa.String(512))
    metrics: str = Field(sa_type=sa.Text())
    epsilon: str = Field(sa_type=sa.Text())
    lineage: str = Field(sa_type=sa.Text())
    #: Whether the model passed every KPI gate of its plan; NULL: registered before 0002.
    promotable: bool | None = Field(default=None, sa_type=sa.Boolean())
    #: JSON list of the gates' reasons when not promotable.
    promotion_reasons: str = Field(default="[]", sa_type=sa.Text(),
                                   sa_column_kwargs={"server_default": "[]"})

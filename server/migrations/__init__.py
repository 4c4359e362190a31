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


class ModelExportRow(CoordinatorTable, table=True):
    """An exported artefact of a registered model (revision 0003)."""

    __tablename__ = "model_exports"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    study: str = Field(sa_type=sa.String(128), index=True)
    version: int = Field(sa_type=sa.Integer())
    format: str = Field(sa_type=sa.String(16))
    #: "fp32" or "int8".
    precision: str = Field(sa_type=sa.String(16))
    sha256: str = Field(sa_type=sa.String(64))
    path: str = Field(sa_type=sa.String(512))
    size_bytes: int = Field(sa_type=sa.Integer())
    #: JSON: what the parity check at export measured (server.onnx_export.Parity).
    parity: str = Field(sa_type=sa.Text())


class ApiTokenRow(CoordinatorTable, table=True):
    """A prediction-service API token; only the SHA-256 of its secret is kept (0004)."""

    __tablename__ = "api_tokens"
    id: int | None = Field(default=None, primary_key=True)
    token_id: str = Field(sa_type=sa.String(32), unique=True)
    name: str = Field(sa_type=sa.String(128))
    role: str = Field(sa_type=sa.String(32))
    secret_sha256: str = Field(sa_type=sa.String(64))
    created_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class ReleaseRow(CoordinatorTable, table=True):
    """The release state of one study's served model: stable, candidate, split (0004)."""

    __tablename__ = "releases"
    study: str = Field(sa_type=sa.String(128), primary_key=True)
    stable_version: int = Field(sa_type=sa.Integer())
    candidate_version: int | None = Field(default=None, sa_type=sa.Integer())
    #: "canary" (a share of the traffic) or "blue_green" (none until promoted).
    mode: str | None = Field(default=None, sa_type=sa.String(16))
    percent: float = Field(default=0.0, sa_type=sa.Float())
    updated_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    #: Bumped on every change, so that a running service notices one.
    generation: int = Field(default=0, sa_type=sa.Integer())
    #: Automatic rollback thresholds of the candidate (docs/serving.md).
    max_error_rate: float = Field(default=0.05, sa_type=sa.Float())
    max_score_psi: float = Field(default=0.25, sa_type=sa.Float())
    min_requests: int = Field(default=50, sa_type=sa.Integer())


class ReleaseEventRow(CoordinatorTable, table=True):
    """Every release action, oldest first (also appended to the coordinator's audit log)."""

    __tablename__ = "release_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    study: str = Field(sa_type=sa.String(128), index=True)
    action: str = Field(sa_type=sa.String(32))
    actor: str = Field(sa_type=sa.String(128))
    details: str = Field(sa_type=sa.Text())


class DriftCheckRow(CoordinatorTable, table=True):
    """One drift check of a registered model by the coordinator (0005)."""

    __tablename__ = "drift_checks"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    study: str = Field(sa_type=sa.String(128), index=True)
    version: int = Field(sa_type=sa.Integer())
    #: The largest per-feature PSI of the check, and the plan's threshold.
    worst_psi: float = Field(sa_type=sa.Float())
    threshold: float = Field(sa_type=sa.Float())
    retraining_recommended: bool = Field(sa_type=sa.Boolean())
    #: The drafted next plan (relative to the coordinator folder), "" when none.
    draft_plan: str = Field(default="", sa_type=sa.String(512))
    #: JSON: the check's per-feature PSI and the sites it covered.
    details: str = Field(sa_type=sa.Text())

"""The site store's tables (SQLModel) and where their Alembic migrations live.

The tables below describe what the revisions in ``migrations/versions/`` create; nothing
here creates them directly: :func:`common.sql.migrate` applies pending revisions of
:data:`MIGRATIONS_DIR` when a store opens. The site's tables have their own metadata, apart
from the coordinator's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

#: The site store's Alembic scripts folder (``env.py``, ``versions/``).
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SiteTable(SQLModel, registry=registry()):
    """Base of the site store's tables (own metadata, apart from the coordinator's)."""


class ApprovalRow(SiteTable, table=True):
    __tablename__ = "approvals"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    plan_hash: str = Field(sa_type=sa.String(128), index=True)
    decision: str = Field(sa_type=sa.String(16))
    actor: str = Field(sa_type=sa.String(128))
    note: str = Field(sa_type=sa.Text())


class LedgerRow(SiteTable, table=True):
    """One privacy release on a dataset: its mechanism, what it was for, and its epsilon.

    ``mechanism`` and ``parameters`` (canonical JSON) are what an independent accountant
    needs (``privacy.mechanisms``); ``delta`` is the site's delta the entry was accounted
    at; ``mac`` chains and authenticates the entry (``client_app.store.ledger_chain``).
    """

    __tablename__ = "ledger"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    kind: str = Field(sa_type=sa.String(32))
    mechanism: str = Field(sa_type=sa.String(64))
    parameters: str = Field(sa_type=sa.Text())  # JSON
    plan_hash: str = Field(sa_type=sa.String(128))
    study: str = Field(sa_type=sa.String(128))
    run_id: str = Field(sa_type=sa.String(128))
    round: int = Field(sa_type=sa.Integer())
    dataset_id: str = Field(sa_type=sa.String(128), index=True)
    dataset_version: str = Field(sa_type=sa.String(128))
    delta: float = Field(sa_type=sa.Float())
    epsilon: float = Field(sa_type=sa.Float())
    epsilon_cumulative: float = Field(sa_type=sa.Float())
    mac: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)


class EventRow(SiteTable, table=True):
    __tablename__ = "events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    kind: str = Field(sa_type=sa.String(64), index=True)
    plan_hash: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    details: str = Field(sa_type=sa.Text())


class SettingRow(SiteTable, table=True):
    __tablename__ = "settings"
    key: str = Field(sa_type=sa.String(64), primary_key=True)
    value: str = Field(sa_type=sa.Text())


class DatasetVersionRow(SiteTable, table=True):
    """One stored version of a dataset: content hash, lineage, policy and validation report."""

    __tablename__ = "dataset_versions"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    dataset: str = Field(sa_type=sa.String(128), index=True)
    version: str = Field(sa_type=sa.String(128))
    parent_version: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    source_hash: str = Field(sa_type=sa.String(128))
    source_name: str = Field(sa_type=sa.String(256))
    source_format: str = Field(sa_type=sa.String(16))
    plan_hash: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    rows: int = Field(sa_type=sa.Integer())
    policy: str = Field(sa_type=sa.Text())  # JSON
    report: str = Field(sa_type=sa.Text())  # JSON: counts only, never cell values
    actor: str = Field(sa_type=sa.String(128))
    #: The keyed digest that stands for this version outside the site (set once).
    public_version: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)


class ConsentEventRow(SiteTable, table=True):
    """One consent change for one patient, in one scope (a study name, or "*" for all)."""

    __tablename__ = "consent_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    scope: str = Field(sa_type=sa.String(128))
    action: str = Field(sa_type=sa.String(16))  # "withdraw" | "grant"
    patient_ref: str = Field(sa_type=sa.String(128), index=True)  # keyed hash of the id
    patient_sealed: str = Field(sa_type=sa.Text())  # the id, encrypted under the vault key
    source: str = Field(sa_type=sa.String(32))  # "manual" | "import"
    batch: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    actor: str = Field(sa_type=sa.String(128))
    note: str = Field(sa_type=sa.Text())


class StudyPlanRow(SiteTable, table=True):
    """A study plan this site received (from a file or from the coordinator), by hash."""

    __tablename__ = "study_plans"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    plan_hash: str = Field(sa_type=sa.String(128), unique=True)
    study: str = Field(sa_type=sa.String(128), index=True)
    plan_toml: str = Field(sa_type=sa.Text())
    source: str = Field(sa_type=sa.String(32))  # "file" | "coordinator"


class TaskRow(SiteTable, table=True):
    """One task the agent admitted (nonce unique: a replay is never admitted twice)."""

    __tablename__ = "tasks"
    __table_args__ = (sa.UniqueConstraint("nonce", name="uq_tasks_nonce"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    run_id: str = Field(sa_type=sa.String(128), index=True)
    plan_hash: str = Field(sa_type=sa.String(128))
    kind: str = Field(sa_type=sa.String(32))
    round: int = Field(sa_type=sa.Integer())
    nonce: str = Field(sa_type=sa.String(64))
    ok: bool | None = Field(default=None, sa_type=sa.Boolean(), nullable=True)


class SentReplyRow(SiteTable, table=True):
    """The reply the agent sent for the latest step of one kind in one run (unsigned: it is
    signed afresh for each task that receives it), with the digest of the inputs it answered
    (``client_app.agent.repeats``). One row per run and kind; an older one is replaced."""

    __tablename__ = "sent_replies"
    __table_args__ = (sa.UniqueConstraint("run_id", "kind", name="uq_sent_replies_run_kind"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    run_id: str = Field(sa_type=sa.String(128))
    plan_hash: str = Field(sa_type=sa.String(128))
    kind: str = Field(sa_type=sa.String(32))
    round: int = Field(sa_type=sa.Integer())
    inputs_digest: str = Field(sa_type=sa.String(64))
    reply: bytes = Field(sa_type=sa.LargeBinary())

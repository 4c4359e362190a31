"""The site store's schema: its SQLModel tables, its engine and its Alembic migrations.

The tables below describe what the revisions in ``versions/`` create; nothing here creates
them directly. :func:`migrate` applies pending revisions when a store opens. SQLite engines
run in WAL mode with a busy timeout and start every transaction with ``BEGIN IMMEDIATE``, so
that several processes can share one ``site.db`` and read-then-write steps are serialised.
"""

from __future__ import annotations

import os
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import registry
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel

BUSY_TIMEOUT_S = 30.0
#: Execution option marking a read-only transaction: on SQLite it starts with a plain
#: ``BEGIN`` (a WAL snapshot that blocks no writer) instead of ``BEGIN IMMEDIATE``.
READ_ONLY = "tessera_read_only"
_SCRIPTS = Path(__file__).parent


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
    __tablename__ = "ledger"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    plan_hash: str = Field(sa_type=sa.String(128))
    study: str = Field(sa_type=sa.String(128))
    round: int = Field(sa_type=sa.Integer())
    dataset_id: str = Field(sa_type=sa.String(128), index=True)
    dataset_version: str = Field(sa_type=sa.String(128))
    noise_multiplier: float = Field(sa_type=sa.Float())
    sample_rate: float = Field(sa_type=sa.Float())
    steps: int = Field(sa_type=sa.Integer())
    delta: float = Field(sa_type=sa.Float())
    epsilon: float = Field(sa_type=sa.Float())
    epsilon_cumulative: float = Field(sa_type=sa.Float())


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


def ensure_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0o600 if it does not exist yet."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE``.

    Writes hold SQLite's write lock from their first statement, so a read-then-write
    transaction never fails half-way with "database is locked"; pass ``READ_ONLY`` in the
    execution options for transactions that only read.
    """
    sa_url = make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    in_memory = sa_url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    }
    if in_memory:
        kwargs["poolclass"] = StaticPool
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS).replace("%", "%%"))
    return config


@cache
def head_revision() -> str | None:
    """The newest revision shipped in ``versions/``."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, in one transaction (no-op when current)."""
    with engine.begin() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head_revision():
            return
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

"""The coordinator store's schema: its SQLModel tables, its engine and its Alembic migrations.

The tables below describe what the revisions in ``versions/`` create; nothing here creates
them directly. :func:`migrate_coordinator` applies pending revisions when the store opens.
SQLite engines run in WAL mode with a busy timeout and start every transaction with
``BEGIN IMMEDIATE``, so that several processes can share ``coordinator.db``.
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


def ensure_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0o600 if it does not exist yet."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def create_coordinator_engine(url: str) -> Engine:
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


def migrate_coordinator(engine: Engine) -> None:
    """Bring the schema to the newest revision, in one transaction (no-op when current)."""
    with engine.begin() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head_revision():
            return
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

"""SQL engines and Alembic migrations, shared by the site store and the coordinator store.

SQLite engines run in WAL mode with a busy timeout and start every transaction with
``BEGIN IMMEDIATE``, so that several processes can share one database file and a
read-then-write transaction never fails half-way with "database is locked"; transactions
that only read pass :data:`READ_ONLY` in their execution options and start with a plain
``BEGIN`` (a WAL snapshot that blocks no writer). Other URLs (PostgreSQL) get a plain
engine with pre-ping.

Each store ships its own Alembic scripts folder (``env.py``, ``script.py.mako``,
``versions/``) and keeps its tables in its own package; :func:`migrate` brings a database to
the newest revision of a folder in one transaction, and :func:`run_alembic_env` is the whole
body of every ``env.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

BUSY_TIMEOUT_S = 30.0
#: Execution option marking a read-only transaction: on SQLite it starts with a plain
#: ``BEGIN`` (a WAL snapshot that blocks no writer) instead of ``BEGIN IMMEDIATE``.
READ_ONLY = "tessera_read_only"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE``."""
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


def alembic_config(scripts_dir: Path) -> Config:
    """An Alembic configuration for the scripts folder ``scripts_dir`` (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(Path(scripts_dir)).replace("%", "%%"))
    return config


@cache
def _head(scripts_dir: Path) -> str | None:
    return ScriptDirectory.from_config(alembic_config(scripts_dir)).get_current_head()


def head_revision(scripts_dir: Path) -> str | None:
    """The newest revision in ``scripts_dir/versions`` (read once per folder)."""
    return _head(Path(scripts_dir).resolve())


def migrate(engine: Engine, scripts_dir: Path) -> None:
    """Bring the schema to the newest revision of ``scripts_dir``, in one transaction.

    A no-op when the database is already at the head; a fresh database gets every revision.
    """
    head = head_revision(scripts_dir)
    if _current_revision(engine) == head:
        return  # the common case, read without taking the write lock
    with engine.begin() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
        config = alembic_config(scripts_dir)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _current_revision(engine: Engine) -> str | None:
    """The revision a database is at (``None`` before its first migration), read in a
    read-only transaction."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        try:
            with connection.begin():
                return connection.execute(sa.text("SELECT version_num FROM alembic_version")
                                          ).scalar_one_or_none()
        except sa.exc.DBAPIError:  # no version table yet (or another backend's wording)
            return None


def run_alembic_env(context: ModuleType, metadata: sa.MetaData) -> None:
    """The body of a store's ``env.py``: run its migrations against ``metadata``.

    ``context`` is ``alembic.context``. :func:`migrate` hands over an open connection in
    ``config.attributes["connection"]``; a developer running the ``alembic`` command instead
    sets ``sqlalchemy.url`` (online) or asks for SQL (offline). Migrations run in batch mode
    so that SQLite can alter tables.
    """
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"),
                          target_metadata=metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(context, connection, metadata)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as own_connection:
            _run_online(context, own_connection, metadata)
    finally:
        engine.dispose()


def _run_online(context: ModuleType, connection: sa.Connection, metadata: sa.MetaData) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


class SqlStore:
    """Base of Tessera's stores: one migrated engine, short transactions, a context manager.

    Subclasses name their Alembic scripts folder; :meth:`_transaction` is the only way they
    reach the database (``write`` ones take SQLite's write lock at once).
    """

    def __init__(self, url: str, scripts_dir: Path) -> None:
        self._engine = make_engine(url)
        migrate(self._engine, scripts_dir)

    def close(self) -> None:
        """Release the engine's connections."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Session]:
        """A short transaction; only ``write`` ones take SQLite's write lock."""
        bind = self._engine if write else self._engine.execution_options(**{READ_ONLY: True})
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

"""The shared SQL engine and migration runner, on real SQLite files and real Alembic folders."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

import common.sql as sql_module
from common.sql import READ_ONLY, alembic_config, head_revision, make_engine, migrate

ENV_PY = """
from alembic import context
import sqlalchemy as sa

from common.sql import run_alembic_env

metadata = sa.MetaData()
sa.Table("things", metadata, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(32), nullable=False))
run_alembic_env(context, metadata)
"""

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    {body}


def downgrade() -> None:
    pass
"""


def _scripts(folder: Path, revisions: list[tuple[str, str | None, str]]) -> Path:
    """An Alembic scripts folder with the shared env.py and the given revisions."""
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV_PY, encoding="utf-8")
    for rev, down, body in revisions:
        text = REVISION.format(rev=rev, down=down, body=body)
        (folder / "versions" / f"{rev}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


CREATE_THINGS = ('op.create_table("things", sa.Column("id", sa.Integer, primary_key=True), '
                 'sa.Column("name", sa.String(32), nullable=False))')


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _version(db: Path) -> list[tuple[str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchall()


def test_sqlite_engine_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_write_transactions_hold_the_lock_from_their_start(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    engine = make_engine(f"sqlite:///{db}")
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        with engine.begin():  # no statement yet: BEGIN IMMEDIATE already took the lock
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released on commit
        other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_read_only_transactions_block_no_writer(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    engine = make_engine(f"sqlite:///{db}")
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        reader = engine.execution_options(**{READ_ONLY: True})
        with reader.begin() as conn:
            conn.exec_driver_sql("SELECT 1").scalar()
            other.execute("BEGIN IMMEDIATE")
            other.execute("CREATE TABLE t (x INTEGER)")
            other.execute("COMMIT")
    finally:
        other.close()
        engine.dispose()


def test_in_memory_engine_keeps_one_database_across_connections() -> None:
    engine = make_engine("sqlite://")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()


def test_migrate_creates_the_schema_and_stamps_the_folders_head(tmp_path: Path) -> None:
    scripts = _scripts(tmp_path / "scripts", [("s1", None, CREATE_THINGS)])
    db = tmp_path / "a.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        migrate(engine, scripts)
    finally:
        engine.dispose()
    assert "things" in _tables(db)
    assert _version(db) == [("s1",)]


def test_migrate_at_the_head_runs_no_revision(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = _scripts(tmp_path / "scripts", [("s1", None, CREATE_THINGS)])
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        migrate(engine, scripts)

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("a current database must not be upgraded")

        monkeypatch.setattr(sql_module.command, "upgrade", refuse)
        migrate(engine, scripts)
    finally:
        engine.dispose()


def test_migrate_applies_only_the_pending_revisions(tmp_path: Path) -> None:
    add_note = 'op.add_column("things", sa.Column("note", sa.Text(), nullable=True))'
    old = _scripts(tmp_path / "old", [("s1", None, CREATE_THINGS)])
    new = _scripts(tmp_path / "new", [("s1", None, CREATE_THINGS), ("s2", "s1", add_note)])
    db = tmp_path / "a.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        migrate(engine, old)
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO things (name) VALUES ('kept')")
        migrate(engine, new)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT name, note FROM things").fetchall()
    finally:
        engine.dispose()
    assert rows == [("kept", None)]
    assert _version(db) == [("s2",)]


def test_head_revision_is_per_folder_and_read_once(tmp_path: Path) -> None:
    one = _scripts(tmp_path / "one", [("a1", None, "pass")])
    two = _scripts(tmp_path / "two", [("b1", None, "pass"), ("b2", "b1", "pass")])
    assert head_revision(one) == "a1"
    assert head_revision(two) == "b2"
    (one / "versions" / "a2.py").write_text(
        REVISION.format(rev="a2", down="a1", body="pass"), encoding="utf-8")
    assert head_revision(one) == "a1"  # shipped revisions do not change while running
    assert head_revision(tmp_path / "one" / ".." / "one") == "a1"  # one entry per folder


def test_the_alembic_command_migrates_a_url_through_the_shared_env(tmp_path: Path) -> None:
    scripts = _scripts(tmp_path / "scripts", [("s1", None, CREATE_THINGS)])
    db = tmp_path / "dev.db"
    config = alembic_config(scripts)
    config.set_main_option("sqlalchemy.url", f"sqlite:///{db}")
    command.upgrade(config, "head")
    assert "things" in _tables(db)
    assert _version(db) == [("s1",)]


def test_the_alembic_command_prints_sql_offline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scripts = _scripts(tmp_path / "scripts", [("s1", None, CREATE_THINGS)])
    config = alembic_config(scripts)
    config.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path / 'never.db'}")
    command.upgrade(config, "head", sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE things" in out
    assert not (tmp_path / "never.db").exists()


def test_a_failed_revision_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    broken = 'op.execute("CREATE TABLE half (x INTEGER)")\n    raise RuntimeError("broken")'
    scripts = _scripts(tmp_path / "scripts", [("s1", None, CREATE_THINGS), ("s2", "s1", broken)])
    db = tmp_path / "a.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with pytest.raises(RuntimeError, match="broken"):
            migrate(engine, scripts)
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert tables == set()  # one transaction: neither s1 nor the half-made s2 is kept

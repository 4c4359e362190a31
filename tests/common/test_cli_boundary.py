"""The one CLI error boundary: known errors become one line on stderr and an exit status,
never a traceback; anything else is a bug and propagates as one."""

from __future__ import annotations

import gzip
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from common.cli_boundary import cli_boundary
from common.errors import ErrorCode, TesseraError, describe, exit_status

app = typer.Typer()


@app.command("refuse")
def refuse() -> None:
    with cli_boundary("cannot read the plan"):
        raise TesseraError(ErrorCode.BUDGET_EXCEEDED, "epsilon 3.2 would pass the ceiling 3")


@app.command("read")
def read(path: Path) -> None:
    with cli_boundary("cannot read the plan"):
        path.read_bytes()
    typer.echo("read")


@app.command("store")
def store(path: Path, patient: str) -> None:
    with cli_boundary():
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            with engine.begin() as connection:
                connection.execute(sa.text("CREATE TABLE IF NOT EXISTS p (id TEXT UNIQUE)"))
                connection.execute(sa.text("INSERT INTO p VALUES (:id)"), {"id": patient})
        finally:
            engine.dispose()


@app.command("bug")
def bug(kind: str) -> None:
    with cli_boundary("cannot read the plan"):
        if kind == "value":
            raise ValueError("a bug")
        if kind == "exit":
            raise typer.Exit(3)
        sa.create_engine("not a database url")


def _run(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_tessera_error_keeps_its_status_and_message_without_the_context() -> None:
    result = _run("refuse")
    assert result.exit_code == exit_status(ErrorCode.BUDGET_EXCEEDED) == 6
    assert result.stderr == "error: epsilon 3.2 would pass the ceiling 3\n"
    assert result.stdout == ""


def test_a_directory_where_a_file_is_expected_is_named_without_a_traceback(
    tmp_path: Path,
) -> None:
    result = _run("read", tmp_path)
    assert result.exit_code == exit_status(ErrorCode.INTERNAL)
    assert result.stderr == f"error: cannot read the plan: is a directory: {tmp_path}\n"
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "plan.toml"
    result = _run("read", missing)
    assert result.exit_code == exit_status(ErrorCode.INTERNAL)
    assert result.stderr == (f"error: cannot read the plan: no such file or directory: "
                             f"{missing}\n")


def test_a_database_error_names_only_its_type(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    assert _run("store", db, "MRN-0042").exit_code == 0
    duplicate = _run("store", db, "MRN-0042")
    assert duplicate.exit_code == exit_status(ErrorCode.INTERNAL)
    assert duplicate.stderr == "error: the database cannot be used (IntegrityError)\n"
    assert "MRN" not in duplicate.output and "INSERT" not in duplicate.output
    (tmp_path / "damaged.db").write_bytes(b"patient MRN-0042 " * 64)
    damaged = _run("store", tmp_path / "damaged.db", "MRN-7")
    assert damaged.stderr == "error: the database cannot be used (DatabaseError)\n"


def test_the_sqlite_drivers_own_errors_are_database_errors(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"patient MRN-0042 " * 64)
    with closing(sqlite3.connect(damaged)) as connection, \
            pytest.raises(sqlite3.DatabaseError) as raised:
        connection.execute("SELECT name FROM sqlite_master")
    assert describe(raised.value) == (exit_status(ErrorCode.INTERNAL),
                                      "the database cannot be used (DatabaseError)")


@pytest.mark.parametrize("kind", ["value", "sqlalchemy"])
def test_any_other_exception_propagates_as_the_bug_it_is(kind: str) -> None:
    result = _run("bug", kind)
    assert result.exit_code == 1
    assert not isinstance(result.exception, SystemExit)
    assert result.exception is not None and describe(result.exception) is None
    assert "error:" not in result.stderr


def test_an_exit_passes_unchanged() -> None:
    result = _run("bug", "exit")
    assert result.exit_code == 3 and result.output == ""


def test_os_errors_name_both_paths_and_never_file_contents(tmp_path: Path) -> None:
    with pytest.raises(OSError) as renamed:
        os.rename(tmp_path / "a.csv", tmp_path / "b.csv")
    assert describe(renamed.value) == (
        exit_status(ErrorCode.INTERNAL),
        f"no such file or directory: {tmp_path / 'a.csv'} -> {tmp_path / 'b.csv'}")
    archive = tmp_path / "kit.tar.gz"
    archive.write_bytes(b"SECRET-KEY-MATERIAL")
    with gzip.open(archive) as opened, pytest.raises(OSError) as not_gzip:
        opened.read()
    assert "b'SE'" in str(not_gzip.value)  # the library's own message carries file bytes
    assert describe(not_gzip.value) == (exit_status(ErrorCode.INTERNAL), "BadGzipFile")

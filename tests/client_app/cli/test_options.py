"""What the site commands share: opening a site folder's store, and the plan-hash check."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_app.cli.options import checked_plan_hash
from client_app.store.folder import open_site_dir
from common.errors import ErrorCode, TesseraError, exit_status
from tests.client_app.cli.conftest import PLAN, invoke


def test_unknown_site_folder_exits_with_not_found(tmp_path: Path) -> None:
    result = invoke("budget", "--site-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == exit_status(ErrorCode.NOT_FOUND)
    assert "not initialised (no site.toml)" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "nowhere").exists()


def test_a_damaged_site_database_is_named_by_its_error_type_only(site_dir: Path) -> None:
    db_path = open_site_dir(site_dir).db_path
    db_path.write_bytes(b"not a database " * 100)
    result = invoke("approvals", "--site-dir", str(site_dir))
    assert result.exit_code == exit_status(ErrorCode.INTERNAL)
    assert result.stderr.strip() == "error: the database cannot be used (DatabaseError)"
    assert "Traceback" not in result.output
    assert db_path.read_bytes() == b"not a database " * 100


def test_plan_hash_is_lower_cased_and_a_bad_one_names_what_is_wrong() -> None:
    assert checked_plan_hash(PLAN.upper()) == PLAN
    with pytest.raises(TesseraError) as short:
        checked_plan_hash("abc")
    assert short.value.code is ErrorCode.PLAN_INVALID
    assert short.value.message.endswith("(got 3 characters)")
    for not_hex in ("g" * 64, "a" * 63 + "!"):
        with pytest.raises(TesseraError) as refused:
            checked_plan_hash(not_hex)
        assert refused.value.message.endswith("(got 64 characters, some not hexadecimal)")

"""``tessera site install-service``: units for two accounts; root's part only as root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.errors import ErrorCode, exit_status
from tests.client_app.cli.conftest import invoke

UNITS = ("tessera-agent-h1.service", "tessera-supernode-h1.service")


def _install(site_dir: Path, tmp_path: Path, *extra: str):
    return invoke("install-service", "--site-dir", str(site_dir),
                  "--superlink", "link.example.org:9092", "--unit-dir", str(tmp_path / "units"),
                  "--node-home", str(tmp_path / "node"),
                  "--credential", str(tmp_path / "etc" / "site-passphrase.cred"),
                  "--site-user", "tessera-test-site", "--node-user", "tessera-test-node",
                  *extra)


def test_without_root_it_writes_the_units_and_says_what_root_must_do(
        site_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    owner = site_dir.stat().st_uid, site_dir.stat().st_mode
    result = _install(site_dir, tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == list(UNITS)
    assert "--create-users" in result.output
    assert "systemd-creds encrypt --name=site-passphrase" in result.output
    assert "systemctl enable --now tessera-agent-h1.service" in result.output
    assert (site_dir.stat().st_uid, site_dir.stat().st_mode) == owner
    assert not (tmp_path / "node").exists()


def test_creating_accounts_without_root_is_refused_and_writes_nothing(
        site_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = _install(site_dir, tmp_path, "--create-users")
    assert result.exit_code == exit_status(ErrorCode.PERMISSION_DENIED)
    assert "needs root" in result.output
    assert not (tmp_path / "units").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path: run as root")
def test_as_root_missing_accounts_are_named_and_nothing_changes(
        site_dir: Path, tmp_path: Path) -> None:
    before = site_dir.stat()
    result = _install(site_dir, tmp_path)
    assert result.exit_code == exit_status(ErrorCode.NOT_FOUND)
    assert "does not exist" in result.output and "--create-users" in result.output
    assert not (tmp_path / "units").exists()
    assert (site_dir.stat().st_uid, site_dir.stat().st_mode) == (before.st_uid, before.st_mode)


def test_a_site_without_a_kit_needs_the_superlink_named(site_dir: Path,
                                                        tmp_path: Path) -> None:
    result = invoke("install-service", "--site-dir", str(site_dir),
                    "--unit-dir", str(tmp_path / "units"))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "kit" in result.output
    assert not (tmp_path / "units").exists()


def test_a_bad_account_name_is_refused(site_dir: Path, tmp_path: Path) -> None:
    result = _install(site_dir, tmp_path, "--node-user", "Bad Name")
    assert result.exit_code == exit_status(ErrorCode.CONFIG_INVALID)
    assert "node user" in result.output

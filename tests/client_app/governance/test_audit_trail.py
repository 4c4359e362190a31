"""The site's audit trail: each sync copies only the records past its cursor, appends to the
log it left without reading it again, and reopens (verifying) a log anything else wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

import client_app.governance.audit_trail as audit_trail
from client_app.custody.identity import signing_key
from client_app.custody.vault import SiteVault
from client_app.governance.audit_trail import log_path, sync
from client_app.store.site_store import SiteStore
from privacy.audit_log import AuditLog, verify_log, writer_lock
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites


@pytest.fixture
def vault(tmp_path: Path) -> SiteVault:
    return provision_sites(tmp_path, passphrase=TEST_PASSPHRASE).vaults["s"]


def _event(vault: SiteVault, n: int) -> None:
    with SiteStore.open(vault.site) as store:
        store.record_event("probe", details={"n": n})


def _opens(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    opened: list[Path] = []
    real = AuditLog.open

    def counting(path: Path, *, signing_key: object) -> AuditLog:
        opened.append(Path(path))
        return real(path, signing_key=signing_key)  # type: ignore[arg-type]

    monkeypatch.setattr(audit_trail.AuditLog, "open", staticmethod(counting))
    return opened


def test_each_sync_appends_only_new_records_to_the_log_it_left(
        vault: SiteVault, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sync(vault) > 0
    opened = _opens(monkeypatch)
    assert sync(vault) == 0
    _event(vault, 1)
    assert sync(vault) == 1
    _event(vault, 2)
    assert sync(vault) == 1
    assert opened == []  # the log was as this process left it: not read again
    report = verify_log(log_path(vault))
    assert report.ok and report.records >= 3


def test_a_log_another_writer_appended_to_is_reopened_and_stays_one_chain(
        vault: SiteVault, monkeypatch: pytest.MonkeyPatch) -> None:
    sync(vault)
    key = signing_key(vault)
    assert key is not None
    with writer_lock(log_path(vault)):  # another process's sync
        other = AuditLog.open(log_path(vault), signing_key=key)
        other.append("probe", actor="cli", details={"from": "another process"})
        other.checkpoint()
    opened = _opens(monkeypatch)
    _event(vault, 1)
    assert sync(vault) == 1
    assert opened == [log_path(vault)]
    assert verify_log(log_path(vault)).ok


def test_a_changed_log_is_verified_again_and_not_appended_to(
        vault: SiteVault, caplog: pytest.LogCaptureFixture) -> None:
    sync(vault)
    path = log_path(vault)
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"actor":"site"', b'"actor":"evil"', 1)
    path.write_bytes(b"\n".join(lines))
    size = path.stat().st_size
    _event(vault, 1)
    audit_trail.sync_quietly(vault)
    assert "audit trail not updated" in caplog.text
    assert path.stat().st_size == size

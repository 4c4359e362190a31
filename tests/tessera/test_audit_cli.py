"""``tessera audit``: pinned verification, its messages, and the auditor's own log."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from privacy.audit_log import AuditLog, read_records
from privacy.audit_verify import verify_log
from privacy.sealing import SealingKey
from privacy.signing import SigningKey
from server.provisioning import Federation, init_federation
from tessera.cli import app

DATA_INVALID = 3


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return init_federation(tmp_path / "fed", name="cli", sites=["north"], archives=False)


def _verify(fed: Federation, log: Path):
    return CliRunner().invoke(app, ["--kit", str(fed.auditor_kit), "audit", "verify",
                                    str(log)])


def test_a_file_that_is_not_an_audit_log_is_named_as_such(fed: Federation,
                                                         tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("name,age\nx,1\n")
    result = _verify(fed, notes)
    assert result.exit_code == DATA_INVALID, result.output
    assert "FAILED: notes.csv is not a Tessera audit log" in result.output
    assert "modified" not in result.output


def test_a_folder_is_a_clear_error(fed: Federation, tmp_path: Path) -> None:
    result = _verify(fed, tmp_path)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_each_run_is_recorded_in_the_auditors_own_log(fed: Federation, tmp_path: Path) -> None:
    key = SigningKey(bytes.fromhex((fed.site_kit("north") / "signing.key").read_text().strip()))
    log = AuditLog.create(tmp_path / "site.log", party="north", role="site", signing_key=key,
                          auditor_public_hex=fed.manifest.auditor_sealing_key)
    log.append("study_approved", actor="operator", details={})
    log.checkpoint()
    assert _verify(fed, tmp_path / "site.log").exit_code == 0
    forged = AuditLog.create(tmp_path / "forged.log", party="north", role="site",
                             signing_key=SigningKey.generate(),
                             auditor_public_hex=fed.manifest.auditor_sealing_key)
    forged.checkpoint()
    assert _verify(fed, tmp_path / "forged.log").exit_code == DATA_INVALID
    own = fed.auditor_kit / "audit" / "auditor.log"
    assert verify_log(own, manifest=fed.manifest).ok
    sealing = SealingKey(bytes.fromhex((fed.auditor_kit / "sealing.key").read_text().strip()))
    runs = [e.details for e in read_records(own, auditor_key=sealing, manifest=fed.manifest)]
    assert [(r["log"], r["ok"], r["fault"], r["pinned"]) for r in runs] == [
        ("site.log", True, None, True), ("forged.log", False, "replaced", True)]
    assert runs[0]["party"] == "north" and runs[0]["tail_verified"] is False


def test_a_site_kit_verifies_nothing_into_an_auditor_log(fed: Federation,
                                                       tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--kit", str(fed.site_kit("north")), "audit", "verify",
                                      str(tmp_path / "x.log")])
    assert result.exit_code == 10, result.output
    assert not (fed.site_kit("north") / "audit").exists()

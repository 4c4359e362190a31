"""Attack: pass a log off as fully verified with a stale checkpoint, or by cutting its end.

In-file checkpoints are signed by the party that writes the log, so the party (or anyone
who copies the file back) can cut the log back to any earlier checkpoint and the rest still
verifies. Only a trusted checkpoint kept away from the party's disk and covering every record
makes a log "fully verified"; a stale one covers only its prefix.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from privacy.audit_log import AuditLog, export_checkpoint, load_checkpoint
from privacy.audit_verify import verify_log
from server.provisioning import Federation
from tessera.cli import app
from tests.adversarial.conftest import key_of


def _grow(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("epsilon_spent", actor="site-agent", details={"i": i})


def _site_log(fed: Federation, path: Path) -> AuditLog:
    return AuditLog.create(path, party="a", role="site", signing_key=key_of(fed.site_kit("a")),
                           auditor_public_hex=fed.manifest.auditor_sealing_key)


def test_a_stale_trusted_checkpoint_does_not_make_the_log_fully_verified(
        fed: Federation, tmp_path: Path) -> None:
    path = tmp_path / "site.log"
    log = _site_log(fed, path)
    _grow(log, 3)
    export_checkpoint(tmp_path / "stale.cp", log.checkpoint())
    _grow(log, 3)
    log.checkpoint()  # every record is under an in-file checkpoint, signed by the party
    report = verify_log(path, trusted_checkpoint=load_checkpoint(tmp_path / "stale.cp"))
    assert report.ok and report.records == 6
    assert not report.tail_verified and not report.fully_verified
    assert "3..5" in report.message
    result = CliRunner().invoke(app, ["--kit", str(fed.auditor_kit), "audit", "verify",
                                      str(path), "--checkpoint", str(tmp_path / "stale.cp")])
    assert result.exit_code == 0, result.output
    assert "OK:" not in result.output and "TAIL UNVERIFIED" in result.output


def test_a_log_cut_back_to_an_earlier_checkpoint_is_not_fully_verified(
        fed: Federation, tmp_path: Path) -> None:
    path = tmp_path / "site.log"
    log = _site_log(fed, path)
    _grow(log, 3)
    log.checkpoint()
    cut_here = path.read_bytes()
    _grow(log, 3)
    log.checkpoint()
    path.write_bytes(cut_here)  # the last three records and their checkpoint are gone
    report = verify_log(path)
    assert report.ok and report.records == 3 and report.checkpointed == 3
    assert not report.tail_verified and not report.fully_verified


def test_a_trusted_checkpoint_over_every_record_fully_verifies(fed: Federation,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "site.log"
    log = _site_log(fed, path)
    _grow(log, 4)
    export_checkpoint(tmp_path / "now.cp", log.checkpoint())
    report = verify_log(path, trusted_checkpoint=load_checkpoint(tmp_path / "now.cp"))
    assert report.ok and report.tail_verified and report.fully_verified

"""Attack: replace a party's whole audit log with one rebuilt and signed under another key.

Anyone who can write the file can rebuild a log from scratch (fresh preamble, fresh key,
self-consistent chain and checkpoints). The auditor pins each party's signing key from the
signed federation manifest in its kit, so such a log must fail, naming the party it claims.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from privacy.audit_log import AuditLog, export_checkpoint
from privacy.signing import SigningKey
from server.provisioning import Federation
from tessera.cli import app
from tests.adversarial.conftest import key_of

FOREIGN_KEY = "signed by a key the manifest does not give to"


def _log(path: Path, fed: Federation, *, party: str, role: str, key: SigningKey) -> Path:
    log = AuditLog.create(path, party=party, role=role, signing_key=key,
                          auditor_public_hex=fed.manifest.auditor_sealing_key)
    for i in range(3):
        log.append("study_approved", actor="operator", details={"i": i})
    export_checkpoint(path.with_suffix(".cp"), log.checkpoint())
    return path


def _verify(fed: Federation, log: Path, *extra: str):
    return CliRunner().invoke(app, ["--kit", str(fed.auditor_kit), "audit", "verify",
                                    str(log), *extra])


def test_the_genuine_logs_of_a_site_and_the_coordinator_verify(fed: Federation,
                                                              tmp_path: Path) -> None:
    site = _log(tmp_path / "a.log", fed, party="a", role="site", key=key_of(fed.site_kit("a")))
    coordinator = _log(tmp_path / "c.log", fed, party="coordinator", role="coordinator",
                       key=key_of(fed.coordinator_kit))
    for log in (site, coordinator):
        result = _verify(fed, log, "--checkpoint", str(log.with_suffix(".cp")))
        assert result.exit_code == 0, result.output
        assert "OK:" in result.output


def test_a_site_log_rebuilt_under_a_fresh_key_fails(fed: Federation, tmp_path: Path) -> None:
    forged = _log(tmp_path / "a.log", fed, party="a", role="site", key=SigningKey.generate())
    result = _verify(fed, forged)
    assert result.exit_code != 0, result.output
    assert f"{FOREIGN_KEY} site 'a'" in result.output
    assert "INTACT" not in result.output


def test_its_own_trusted_checkpoint_does_not_rescue_a_rebuilt_log(fed: Federation,
                                                                  tmp_path: Path) -> None:
    forged = _log(tmp_path / "a.log", fed, party="a", role="site", key=SigningKey.generate())
    result = _verify(fed, forged, "--checkpoint", str(forged.with_suffix(".cp")))
    assert result.exit_code != 0, result.output
    assert FOREIGN_KEY in result.output and "OK:" not in result.output


def test_a_log_claiming_one_site_but_signed_by_another_fails(fed: Federation,
                                                            tmp_path: Path) -> None:
    forged = _log(tmp_path / "b.log", fed, party="b", role="site", key=key_of(fed.site_kit("a")))
    result = _verify(fed, forged)
    assert result.exit_code != 0, result.output
    assert f"{FOREIGN_KEY} site 'b'" in result.output


def test_a_coordinator_log_rebuilt_under_a_fresh_key_fails(fed: Federation,
                                                          tmp_path: Path) -> None:
    forged = _log(tmp_path / "c.log", fed, party="coordinator", role="coordinator",
                  key=SigningKey.generate())
    result = _verify(fed, forged)
    assert result.exit_code != 0, result.output
    assert f"{FOREIGN_KEY} the coordinator" in result.output


def test_a_site_log_signed_with_the_coordinator_key_fails(fed: Federation,
                                                         tmp_path: Path) -> None:
    """The coordinator holds a real federation key, but not the one of site 'a'."""
    forged = _log(tmp_path / "a.log", fed, party="a", role="site",
                  key=key_of(fed.coordinator_kit))
    result = _verify(fed, forged)
    assert result.exit_code != 0, result.output
    assert f"{FOREIGN_KEY} site 'a'" in result.output


def test_a_log_of_a_party_the_manifest_does_not_list_fails(fed: Federation,
                                                          tmp_path: Path) -> None:
    forged = _log(tmp_path / "m.log", fed, party="mallory", role="site",
                  key=SigningKey.generate())
    result = _verify(fed, forged)
    assert result.exit_code != 0, result.output
    assert "'mallory'" in result.output and "manifest" in result.output


def test_the_library_reports_the_replacement_as_its_own_fault(fed: Federation,
                                                             tmp_path: Path) -> None:
    from privacy.audit_format import Fault
    from privacy.audit_verify import verify_log

    genuine = _log(tmp_path / "a.log", fed, party="a", role="site",
                   key=key_of(fed.site_kit("a")))
    assert verify_log(genuine, manifest=fed.manifest).ok
    forged = _log(tmp_path / "f.log", fed, party="a", role="site", key=SigningKey.generate())
    report = verify_log(forged, manifest=fed.manifest)
    assert (report.ok, report.fault, report.first_bad_index) == (False, Fault.REPLACED, -1)
    assert f"{FOREIGN_KEY} site 'a'" in report.message


def test_a_pulled_copy_is_checked_against_the_manifest_too(fed: Federation,
                                                          tmp_path: Path) -> None:
    from privacy.audit_format import Fault
    from privacy.audit_verify import verify_bytes

    forged = _log(tmp_path / "c.log", fed, party="coordinator", role="coordinator",
                  key=SigningKey.generate())
    report = verify_bytes(forged.read_bytes(), manifest=fed.manifest)
    assert report.fault is Fault.REPLACED

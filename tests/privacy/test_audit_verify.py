"""Verification against the signed manifest: the pinned key, what is and is not a log."""

from __future__ import annotations

from pathlib import Path

import pytest

from privacy.audit_format import Fault
from privacy.audit_log import AuditLog
from privacy.audit_verify import verify_bytes, verify_log
from privacy.manifest import Manifest
from privacy.signing import SigningKey, canonical
from server.provisioning import Federation, init_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "out", name="pins",
                           sites=["north", "south"], archives=False)


def _key(kit: Path) -> SigningKey:
    return SigningKey(bytes.fromhex((kit / "signing.key").read_text().strip()))


def _log(path: Path, fed: Federation, *, party: str, role: str, key: SigningKey,
         records: int = 2) -> Path:
    log = AuditLog.create(path, party=party, role=role, signing_key=key,
                          auditor_public_hex=fed.manifest.auditor_sealing_key)
    for i in range(records):
        log.append("event", actor="a", details={"i": i})
    log.checkpoint()
    return path


def test_each_party_is_pinned_to_the_key_the_manifest_gives_it(fed: Federation,
                                                              tmp_path: Path) -> None:
    parties = [("north", "site", fed.site_kit("north")),
               ("coordinator", "coordinator", fed.coordinator_kit),
               ("auditor", "auditor", fed.auditor_kit)]
    for party, role, kit in parties:
        report = verify_log(_log(tmp_path / f"{party}.log", fed, party=party, role=role,
                                 key=_key(kit)), manifest=fed.manifest)
        assert report.ok and report.pinned, report
        assert (report.party, report.role) == (party, role)


def test_a_role_that_does_not_match_the_party_is_not_pinned_to_its_key(fed: Federation) -> None:
    manifest: Manifest = fed.manifest
    assert manifest.signing_key_of(role="site", party="coordinator") is None
    assert manifest.signing_key_of(role="coordinator", party="north") is None
    assert manifest.signing_key_of(role="auditor", party="auditor") == \
        manifest.auditor_signing_key.lower()


def test_without_a_manifest_nothing_is_pinned(fed: Federation, tmp_path: Path) -> None:
    path = _log(tmp_path / "x.log", fed, party="north", role="site", key=SigningKey.generate())
    report = verify_log(path)
    assert report.ok and not report.pinned


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02\xff" * 50, b"hello, world\n",
                                     b"name,age\nx,1\n", canonical({"tree_size": 3}) + b"\n"])
def test_a_file_that_is_not_an_audit_log_is_reported_as_such(content: bytes) -> None:
    report = verify_bytes(content)
    assert (report.ok, report.fault, report.first_bad_index) == (False, Fault.NOT_A_LOG, -1)
    assert "not a Tessera audit log" in report.message


def test_a_damaged_preamble_is_still_an_audit_log(fed: Federation, tmp_path: Path) -> None:
    data = _log(tmp_path / "x.log", fed, party="north", role="site",
                key=_key(fed.site_kit("north")), records=0).read_bytes()
    first = data.index(b"\n")
    for offset in range(first):
        damaged = data[:offset] + bytes([data[offset] ^ 0x20]) + data[offset + 1:]
        report = verify_bytes(damaged)
        assert not report.ok and report.fault is not Fault.NOT_A_LOG, offset
        assert report.first_bad_index == -1


def test_a_trusted_checkpoint_of_a_replaced_log_is_not_consulted(fed: Federation,
                                                                tmp_path: Path) -> None:
    log = AuditLog.create(tmp_path / "x.log", party="north", role="site",
                          signing_key=SigningKey.generate(),
                          auditor_public_hex=fed.manifest.auditor_sealing_key)
    log.append("event", actor="a", details={})
    trusted = log.checkpoint()
    report = verify_log(tmp_path / "x.log", trusted_checkpoint=trusted, manifest=fed.manifest)
    assert report.fault is Fault.REPLACED and not report.tail_verified

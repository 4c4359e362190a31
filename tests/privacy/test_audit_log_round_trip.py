"""The audit log written and read back: appends, checkpoints and reopening, the auditor's
decryption, refusals of bad input and tampered files, the RFC 6962 Merkle root, and the
speed of appending and verifying."""

from __future__ import annotations

import hashlib
import time

import pytest

from common.errors import ErrorCode, TesseraError
from privacy.audit_format import (
    Fault,
    MerkleFrontier,
    merkle_root,
    node_hash,
)
from privacy.audit_log import (
    AuditLog,
    read_records,
    verify_log,
)
from privacy.sealing import SealingKey
from privacy.signing import SigningKey
from tests.privacy.audit_logs import PLAN
from tests.privacy.audit_logs import fill as _fill
from tests.privacy.audit_logs import flip as _flip
from tests.privacy.audit_logs import new_log as _new_log

# --- round trip --------------------------------------------------------------------------


def test_appended_records_verify_and_decrypt_for_the_auditor(tmp_path, party_key, auditor):
    path = tmp_path / "a.log"
    log = _new_log(path, party_key, auditor)
    assert log.append("consent.granted", actor="operator", role="site-operator",
                      plan_hash=PLAN, details={"patient_count": 17, "secret": "Jane Doe"}) == 0
    assert log.append("study.approved", actor="operator", details={"ok": True}) == 1
    cp = log.checkpoint()
    assert cp["tree_size"] == 2 and len(cp["root"]) == 64
    report = verify_log(path)
    assert report.ok and report.all_checkpointed and report.records == 2
    assert not report.fully_verified  # only a trusted checkpoint kept elsewhere settles the tail
    assert report.last_index == 1 and report.fault is None
    assert b"Jane Doe" not in path.read_bytes() and b"patient_count" not in path.read_bytes()
    entries = read_records(path, auditor_key=auditor)
    assert [e.details for e in entries] == [{"patient_count": 17, "secret": "Jane Doe"},
                                            {"ok": True}]
    assert entries[0].header["event"] == "consent.granted"
    assert entries[0].header["plan_hash"] == PLAN and entries[1].header["role"] == "site"
    assert all(e.checkpointed for e in entries)


def test_reader_without_the_auditor_key_is_refused(tmp_path, party_key, auditor):
    path = tmp_path / "a.log"
    _new_log(path, party_key, auditor).append("x", actor="a", details={})
    with pytest.raises(TesseraError) as err:
        read_records(path, auditor_key=SealingKey.generate())
    assert err.value.code is ErrorCode.KEY_MISSING


def test_reader_refuses_a_tampered_log(tmp_path, party_key, auditor):
    path = tmp_path / "a.log"
    log = _new_log(path, party_key, auditor)
    _fill(log, 3, every=None)
    data = path.read_bytes()
    path.write_bytes(_flip(data, len(data) - 20, 0x01))
    with pytest.raises(TesseraError) as err:
        read_records(path, auditor_key=auditor)
    assert err.value.code is ErrorCode.DATA_INVALID


def test_create_never_overwrites_and_validates_header_fields(tmp_path, party_key, auditor):
    path = tmp_path / "a.log"
    log = _new_log(path, party_key, auditor)
    with pytest.raises(TesseraError) as err:
        _new_log(path, party_key, auditor)
    assert err.value.code is ErrorCode.DUPLICATE
    for kwargs in ({"actor": "Jane Doe"}, {"actor": "a", "plan_hash": "xyz"},
                   {"actor": "a", "role": ""}):
        with pytest.raises(TesseraError) as err:
            log.append("consent.granted", details={}, **kwargs)
        assert err.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(TesseraError):
        log.append("Bad Event", actor="a", details={})
    with pytest.raises(TesseraError):
        log.append("x", actor="a", details={"v": object()})
    with pytest.raises(TesseraError):
        AuditLog.create(tmp_path / "b.log", party="s", role="r", signing_key=party_key,
                        auditor_public_hex="00")
    assert verify_log(path).records == 0


def test_reopened_log_continues_the_chain(tmp_path, party_key, auditor):
    path = tmp_path / "a.log"
    _fill(_new_log(path, party_key, auditor), 5, every=None)
    log = AuditLog.open(path, signing_key=party_key)
    assert log.size == 5 and log.append("x", actor="a", details={"n": 5}) == 5
    log.checkpoint()
    assert verify_log(path).all_checkpointed
    assert [e.index for e in read_records(path, auditor_key=auditor)] == list(range(6))
    with pytest.raises(TesseraError) as err:
        AuditLog.open(path, signing_key=SigningKey.generate())
    assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_open_refuses_a_tampered_log_and_trims_an_incomplete_tail(tmp_path, party_key,
                                                                  auditor):
    path = tmp_path / "a.log"
    _fill(_new_log(path, party_key, auditor), 4, every=None)
    good = path.read_bytes()
    path.write_bytes(good + b'{"ct":"AAA')
    assert verify_log(path).fault is Fault.INCOMPLETE_TAIL
    AuditLog.open(path, signing_key=party_key).append("x", actor="a", details={})
    assert verify_log(path).ok and verify_log(path).records == 5
    path.write_bytes(_flip(good, len(good) // 2, 0x04))
    with pytest.raises(TesseraError) as err:
        AuditLog.open(path, signing_key=party_key)
    assert err.value.code is ErrorCode.DATA_INVALID


# --- Merkle tree -------------------------------------------------------------------------


def test_merkle_root_follows_rfc6962():
    leaves = [hashlib.sha256(b"\x00" + bytes([i])).digest() for i in range(3)]
    assert merkle_root([]).hex() == hashlib.sha256(b"").hexdigest()
    assert merkle_root(leaves[:1]) == leaves[0]
    assert merkle_root(leaves) == node_hash(node_hash(leaves[0], leaves[1]), leaves[2])
    frontier = MerkleFrontier()
    many = [hashlib.sha256(bytes([i])).digest() for i in range(70)]
    for n, leaf in enumerate(many, start=1):
        frontier.add(leaf)
        assert frontier.root() == merkle_root(many[:n]), n


# --- speed -------------------------------------------------------------------------------


def test_thousand_appends_and_a_verify_take_seconds_at_most(tmp_path, party_key, auditor):
    path = tmp_path / "a.log"
    start = time.perf_counter()
    log = _new_log(path, party_key, auditor)
    _fill(log, 1000, every=100)
    appended = time.perf_counter()
    report = verify_log(path)
    verified = time.perf_counter()
    assert report.all_checkpointed and report.records == 1000
    assert appended - start < 5.0 and verified - appended < 2.0

"""Several audit records in one append: the same log as one append each, written once and
fsync'd once, nothing written when one record is bad, and a torn batch that reopens as an
incomplete tail over whole records."""

from __future__ import annotations

import os

import pytest

from common.errors import ErrorCode, TesseraError
from privacy import audit_log
from privacy.audit_format import Fault
from privacy.audit_log import AuditLog, NewRecord, read_records, verify_log
from privacy.audit_verify import verify_bytes
from tests.privacy.audit_logs import PLAN
from tests.privacy.audit_logs import new_log as _new_log


def _records(n: int) -> list[NewRecord]:
    return [NewRecord("training.round", actor="agent", plan_hash=PLAN if i % 2 else None,
                      details={"round": i}) for i in range(n)]


def test_batch_append_reads_back_like_single_appends(tmp_path, party_key, auditor):
    one, many = _new_log(tmp_path / "one.log", party_key, auditor), \
        _new_log(tmp_path / "many.log", party_key, auditor)
    for record in _records(5):
        one.append(record.event_type, actor=record.actor, plan_hash=record.plan_hash,
                   details=record.details)
    one.checkpoint()
    appended = many.append_many(_records(5), checkpoint=True)
    assert appended.indices == (0, 1, 2, 3, 4)
    assert appended.checkpoint is not None and appended.checkpoint["tree_size"] == 5
    for path in (one.path, many.path):
        report = verify_log(path)
        assert report.ok and (report.records, report.checkpointed) == (5, 5), report
    got = [(e.index, e.header["event"], e.header["plan_hash"], e.details)
           for e in read_records(many.path, auditor_key=auditor)]
    want = [(e.index, e.header["event"], e.header["plan_hash"], e.details)
            for e in read_records(one.path, auditor_key=auditor)]
    assert got == want
    # The chain goes on from the batch, in this process and after reopening.
    assert many.append("x", actor="a", details={}) == 5
    assert AuditLog.open(many.path, signing_key=party_key).append("y", actor="a",
                                                                  details={}) == 6
    assert verify_log(many.path).records == 7


def test_batch_append_writes_and_fsyncs_once(tmp_path, party_key, auditor, monkeypatch):
    log = _new_log(tmp_path / "a.log", party_key, auditor)
    writes: list[int] = []
    syncs: list[int] = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(audit_log.os, "write",
                        lambda fd, data: writes.append(len(data)) or real_write(fd, data))
    monkeypatch.setattr(audit_log.os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))
    log.append_many(_records(40), checkpoint=True)
    assert (len(writes), len(syncs)) == (1, 1)
    assert verify_log(log.path).checkpointed == 40


def test_a_bad_record_in_a_batch_writes_nothing(tmp_path, party_key, auditor):
    log = _new_log(tmp_path / "a.log", party_key, auditor)
    log.append_many(_records(2))
    before = log.path.read_bytes()
    bad = [*_records(3), NewRecord("Not An Event", actor="agent", details={})]
    with pytest.raises(TesseraError) as err:
        log.append_many(bad, checkpoint=True)
    assert err.value.code is ErrorCode.CONFIG_INVALID and "event_type" in err.value.message
    assert log.path.read_bytes() == before
    assert log.size == 2 and log.append("x", actor="a", details={}) == 2
    assert verify_log(log.path).ok


def test_every_prefix_of_a_torn_batch_keeps_its_whole_records(tmp_path, party_key, auditor):
    log = _new_log(tmp_path / "a.log", party_key, auditor)
    log.append_many(_records(2), checkpoint=True)
    before = log.path.read_bytes()
    log.append_many(_records(3), checkpoint=True)
    batch = log.path.read_bytes()[len(before):]
    ends = [i + 1 for i, byte in enumerate(batch) if byte == ord("\n")]
    for cut in range(1, len(batch)):
        report = verify_bytes(before + batch[:cut])
        whole = sum(1 for end in ends[:3] if end <= cut)
        if cut in ends:
            assert report.fault is None and report.records == 2 + whole, cut
        else:
            assert (report.fault, report.records) == (Fault.INCOMPLETE_TAIL, 2 + whole), cut
    # A reopened torn batch is cut back to its whole lines and appended to.
    log.path.write_bytes(before + batch[:ends[1] + 5])
    reopened = AuditLog.open(log.path, signing_key=party_key)
    assert reopened.size == 4
    reopened.append_many(_records(1), checkpoint=True)
    assert verify_log(log.path).ok and verify_log(log.path).records == 5

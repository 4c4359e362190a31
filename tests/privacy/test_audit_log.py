"""The audit log after tampering and crashes: fault localisation of every byte flipped,
random flips, swaps, deletions, duplicates and forged insertions, truncation below a trusted
checkpoint, a writer killed while appending and every prefix of an unfinished append."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from privacy.audit_format import (
    Fault,
    leaf_hash,
)
from privacy.audit_log import (
    AuditLog,
    export_checkpoint,
    load_checkpoint,
    read_records,
    verify_log,
)
from privacy.audit_verify import (
    verify_bytes,
)
from privacy.sealing import SealingKey
from privacy.signing import SigningKey, canonical
from tests.privacy.audit_logs import CHECKPOINT_EVERY
from tests.privacy.audit_logs import fill as _fill
from tests.privacy.audit_logs import flip as _flip
from tests.privacy.audit_logs import new_log as _new_log

N_RECORDS = 200


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory, party_key: SigningKey,
            auditor: SealingKey) -> bytes:
    """200 records, a checkpoint after every 50, then 3 unchecked records: the file bytes."""
    path = tmp_path_factory.mktemp("audit") / "big.log"
    log = _new_log(path, party_key, auditor)
    _fill(log, N_RECORDS)
    _fill(log, 3, every=None)
    return path.read_bytes()


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _expected_index_by_offset(data: bytes) -> list[int]:
    """For every byte (newline included): the index verify must name if that byte changes."""
    out: list[int] = []
    records = 0
    for n, line in enumerate(_lines(data)):
        kind = json.loads(line)["type"]
        index = -1 if n == 0 else records
        out.extend([index] * (len(line) + 1))
        records += kind == "record"
    return out


def _record_line_numbers(data: bytes) -> dict[int, int]:
    return {json.loads(line)["header"]["index"]: n for n, line in enumerate(_lines(data))
            if json.loads(line)["type"] == "record"}


def _forged(like: bytes, *, index: int, prev: str) -> bytes:
    """A self-consistent record line someone without any key could write."""
    obj = json.loads(like)
    ct = os.urandom(60)
    header = obj["header"] | {"index": index, "prev": prev,
                              "payload_sha256": hashlib.sha256(ct).hexdigest()}
    return canonical({"type": "record", "header": header, "hash": leaf_hash(header),
                      "ct": base64.b64encode(ct).decode()})


# --- fault localisation ------------------------------------------------------------------


def test_intact_log_with_unchecked_tail_is_ok_but_not_fully_verified(big_log):
    report = verify_bytes(big_log)
    assert report.ok and report.fault is None
    assert report.records == N_RECORDS + 3 and report.checkpointed == N_RECORDS
    assert not report.tail_verified and not report.fully_verified
    assert "not covered" in report.message


def test_every_byte_of_a_record_line_localises_to_that_record(big_log):
    lines = _lines(big_log)
    n = _record_line_numbers(big_log)[120]
    start = sum(len(line) + 1 for line in lines[:n])
    for offset in range(start, start + len(lines[n]) + 1):
        report = verify_bytes(_flip(big_log, offset, 0x01))
        assert not report.ok, offset
        assert report.first_bad_index == 120, (offset, report)


def test_every_byte_of_the_preamble_and_a_checkpoint_is_detected(big_log):
    lines = _lines(big_log)
    expected = _expected_index_by_offset(big_log)
    cp_line = next(n for n, line in enumerate(lines) if b'"checkpoint"' in line)
    cp_start = sum(len(line) + 1 for line in lines[:cp_line])
    offsets = list(range(len(lines[0]) + 1))
    offsets += list(range(cp_start, cp_start + len(lines[cp_line]) + 1))
    for offset in offsets:
        report = verify_bytes(_flip(big_log, offset, 0x20))
        assert not report.ok and report.first_bad_index == expected[offset], (offset, report)
    assert expected[cp_start] == CHECKPOINT_EVERY


def test_random_byte_changes_anywhere_localise_to_the_affected_record(big_log):
    expected = _expected_index_by_offset(big_log)
    rng = random.Random(6962)
    for _ in range(300):
        offset, mask = rng.randrange(len(big_log)), rng.randrange(1, 256)
        report = verify_bytes(_flip(big_log, offset, mask))
        assert not report.ok, offset
        assert report.first_bad_index == expected[offset], (offset, mask, report)
        assert report.fault is not Fault.INCOMPLETE_TAIL


def test_changing_the_last_newline_is_tampering_not_an_incomplete_tail(big_log):
    report = verify_bytes(big_log[:-1] + b" ")
    assert report.fault is Fault.MODIFIED and report.first_bad_index == N_RECORDS + 2


def _edit(big_log: bytes, edit) -> bytes:
    lines = _lines(big_log)
    at = _record_line_numbers(big_log)
    edit(lines, at)
    return _join(lines)


def test_swapped_records_are_reported_reordered_at_the_first(big_log):
    def swap(lines, at):
        lines[at[70]], lines[at[71]] = lines[at[71]], lines[at[70]]
    report = verify_bytes(_edit(big_log, swap))
    assert (report.fault, report.first_bad_index) == (Fault.REORDERED, 70)


def test_deleted_record_is_reported_missing(big_log):
    report = verify_bytes(_edit(big_log, lambda lines, at: lines.pop(at[70])))
    assert (report.fault, report.first_bad_index) == (Fault.MISSING, 70)


def test_deleting_the_last_checkpointed_record_is_reported_missing(big_log):
    report = verify_bytes(_edit(big_log, lambda lines, at: lines.pop(at[N_RECORDS - 1])))
    assert (report.fault, report.first_bad_index) == (Fault.MISSING, N_RECORDS - 1)


def test_duplicated_record_is_reported_inserted_at_the_copy(big_log):
    report = verify_bytes(_edit(big_log, lambda lines, at: lines.insert(at[70] + 1,
                                                                       lines[at[70]])))
    assert (report.fault, report.first_bad_index) == (Fault.INSERTED, 71)


def test_forged_record_that_chains_is_reported_inserted_where_it_stands(big_log):
    def insert(lines, at):
        prev = json.loads(lines[at[69]])["hash"]
        lines.insert(at[70], _forged(lines[at[70]], index=70, prev=prev))
    report = verify_bytes(_edit(big_log, insert))
    assert (report.fault, report.first_bad_index) == (Fault.INSERTED, 70)


def test_forged_record_that_does_not_chain_is_reported_inserted(big_log):
    def insert(lines, at):
        lines.insert(at[70], _forged(lines[at[70]], index=70, prev="11" * 32))
    report = verify_bytes(_edit(big_log, insert))
    assert (report.fault, report.first_bad_index) == (Fault.INSERTED, 70)


def test_rewritten_history_is_caught_by_the_next_checkpoint(big_log):
    """Replacing record 120 and re-chaining everything after it needs no key; the signed
    checkpoint over 150 records localises it to the span after the last good checkpoint."""
    lines = _lines(big_log)
    at = _record_line_numbers(big_log)
    prev = json.loads(lines[at[119]])["hash"]
    for i in range(120, N_RECORDS + 3):
        line = _forged(lines[at[i]], index=i, prev=prev)
        lines[at[i]], prev = line, json.loads(line)["hash"]
    report = verify_bytes(_join(lines))
    assert (report.fault, report.first_bad_index) == (Fault.MODIFIED, 100)


def test_truncation_below_a_trusted_checkpoint_is_reported(tmp_path, party_key, auditor):
    path = tmp_path / "a.log"
    log = _new_log(path, party_key, auditor)
    _fill(log, 60, every=25)
    export_checkpoint(tmp_path / "trusted.json", log.checkpoint())
    trusted = load_checkpoint(tmp_path / "trusted.json")
    assert verify_log(path, trusted_checkpoint=trusted).fully_verified
    lines = _lines(path.read_bytes())
    cut = _record_line_numbers(path.read_bytes())[40]
    path.write_bytes(_join(lines[:cut]))
    plain = verify_log(path)
    assert plain.ok and not plain.tail_verified and plain.checkpointed == 25
    report = verify_log(path, trusted_checkpoint=trusted)
    assert (report.fault, report.first_bad_index, report.ok) == (Fault.TRUNCATED, 40, False)
    path.write_bytes(_join(lines[:cut]) + lines[cut][:30])  # cut mid-line, still truncation
    assert verify_log(path, trusted_checkpoint=trusted).fault is Fault.TRUNCATED


def test_trusted_checkpoint_must_match_the_log(tmp_path, party_key, auditor):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    log_a = _new_log(a, party_key, auditor)
    _fill(log_a, 3, every=None)
    cp = log_a.checkpoint()
    _fill(_new_log(b, party_key, auditor), 3, every=None)
    with pytest.raises(TesseraError) as err:
        verify_log(b, trusted_checkpoint=cp)
    assert err.value.code is ErrorCode.CONFIG_INVALID
    forged = cp | {"tree_size": 2}
    report = verify_log(a, trusted_checkpoint=forged)
    assert (report.fault, report.first_bad_index) == (Fault.BAD_SIGNATURE, -1)
    other = verify_log(a, party_public=SigningKey.generate().public_hex)
    assert other.fault is Fault.BAD_SIGNATURE


# --- crashes -----------------------------------------------------------------------------


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from privacy.audit_log import AuditLog
    from privacy.signing import SigningKey
    log = AuditLog.open(Path(sys.argv[1]), signing_key=SigningKey(bytes.fromhex(sys.argv[2])))
    print("ready", flush=True)
    i = 0
    while True:
        log.append("training.round", actor="agent", details={"i": i, "pad": "x" * (i % 3000)})
        i += 1
        if i % 37 == 0:
            log.checkpoint()
""")


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_killed_writer_leaves_a_log_that_verifies_or_has_an_incomplete_tail(
        tmp_path, party_key, auditor, delay):
    path = tmp_path / "a.log"
    _new_log(path, party_key, auditor)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), party_key.raw.hex()],
                            cwd=root, stdout=subprocess.PIPE, env=os.environ | {
                                "PYTHONPATH": str(root)})
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    report = verify_log(path)
    assert report.fault in (None, Fault.INCOMPLETE_TAIL), report
    assert report.records > 0
    entries = read_records(path, auditor_key=auditor)
    assert [e.details["i"] for e in entries] == list(range(report.records))
    AuditLog.open(path, signing_key=party_key).append("x", actor="a", details={})
    assert verify_log(path).ok


def test_every_prefix_of_an_unfinished_append_is_an_incomplete_tail(tmp_path, party_key,
                                                                   auditor):
    path = tmp_path / "a.log"
    log = _new_log(path, party_key, auditor)
    _fill(log, 2, every=None)
    before = path.read_bytes()
    log.append("x", actor="a", details={"k": "v"})
    line = path.read_bytes()[len(before):]
    for cut in range(1, len(line)):
        report = verify_bytes(before + line[:cut])
        assert (report.fault, report.first_bad_index, report.records) == (
            Fault.INCOMPLETE_TAIL, 2, 2), cut

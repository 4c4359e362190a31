"""Attack: slip in a record whose ciphertext is too short (or too long) to be one.

A record's ``ct`` is a 12-byte nonce, the AES-GCM encryption of a JSON object (at least
``{}``) and a 16-byte tag: at least 30 bytes, at most the 256 KiB details limit plus 28. A
key-less forger can make such a record self-consistent (digest, leaf hash, chain); the
verifier must still reject it as malformed, at its own index.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from privacy.audit_format import Fault, leaf_hash
from privacy.audit_log import AuditLog
from privacy.audit_verify import verify_bytes
from privacy.sealing import SealingKey
from privacy.signing import SigningKey, canonical


def _log_with_forged_last_record(path: Path, ct: bytes) -> bytes:
    log = AuditLog.create(path, party="a", role="site", signing_key=SigningKey.generate(),
                          auditor_public_hex=SealingKey.generate().public_hex)
    log.append("study_approved", actor="operator", details={"n": 1})
    log.append("study_approved", actor="operator", details={"n": 2})
    lines = path.read_bytes().split(b"\n")[:-1]
    last = json.loads(lines[-1])
    header = last["header"] | {"index": 2, "prev": last["hash"],
                               "payload_sha256": hashlib.sha256(ct).hexdigest()}
    forged = canonical({"type": "record", "header": header, "hash": leaf_hash(header),
                        "ct": base64.b64encode(ct).decode("ascii")})
    return path.read_bytes() + forged + b"\n"


@pytest.mark.parametrize("size", [0, 5, 16, 28, 29])
def test_a_record_shorter_than_nonce_tag_and_the_smallest_payload_is_rejected(
        tmp_path: Path, size: int) -> None:
    report = verify_bytes(_log_with_forged_last_record(tmp_path / "a.log", os.urandom(size)))
    assert not report.ok
    assert (report.fault, report.first_bad_index) == (Fault.MODIFIED, 2)
    assert "ct" in report.message


def test_a_record_longer_than_the_details_limit_is_rejected(tmp_path: Path) -> None:
    ct = os.urandom(12 + 256 * 1024 + 16 + 1)
    report = verify_bytes(_log_with_forged_last_record(tmp_path / "a.log", ct))
    assert (report.fault, report.first_bad_index) == (Fault.MODIFIED, 2)


def test_the_smallest_real_record_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = AuditLog.create(path, party="a", role="site", signing_key=SigningKey.generate(),
                          auditor_public_hex=SealingKey.generate().public_hex)
    log.append("x", actor="a", details={})
    assert verify_bytes(path.read_bytes()).ok

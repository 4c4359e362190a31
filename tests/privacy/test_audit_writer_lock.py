"""Several processes append to one audit log at once (the ServerApps of two studies, a
release from the CLI, the prediction service's automatic rollback; at a site the agent and the
app): under the writer lock every record lands once, in one unbroken chain."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from privacy.audit_log import AuditLog, writer_lock
from privacy.audit_verify import verify_bytes
from privacy.sealing import SealingKey
from privacy.signing import SigningKey

WRITERS = 3
APPENDS = 15


def _writer(path: str, key_hex: str, name: str, locked: bool) -> None:
    key = SigningKey(bytes.fromhex(key_hex))
    for i in range(APPENDS):
        if locked:
            with writer_lock(Path(path)):
                log = AuditLog.open(Path(path), signing_key=key)
                log.append("model_released", actor=name, details={"i": i})
                log.checkpoint()
        else:
            log = AuditLog.open(Path(path), signing_key=key)
            log.append("model_released", actor=name, details={"i": i})
            log.checkpoint()


def _run_writers(tmp_path: Path, *, locked: bool) -> tuple[SigningKey, bytes]:
    key = SigningKey.generate()
    path = tmp_path / "coordinator.log"
    AuditLog.create(path, party="coordinator", role="coordinator", signing_key=key,
                    auditor_public_hex=SealingKey.generate().public_hex)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), key.raw.hex(), f"writer-{n}",
                                               locked)) for n in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    return key, path.read_bytes()


def test_concurrent_writers_under_the_lock_leave_one_intact_chain(tmp_path: Path) -> None:
    key, data = _run_writers(tmp_path, locked=True)
    report = verify_bytes(data, party_public=key.public_hex)
    assert report.ok, report.message
    assert report.records == WRITERS * APPENDS


def test_the_lock_file_sits_beside_the_log_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "site.log"
    with writer_lock(path):
        lock = tmp_path / "site.log.lock"
        assert lock.is_file() and lock.stat().st_mode & 0o777 == 0o600

"""Audit logs the audit-log tests write: a site's new log, filled with numbered training
records and a checkpoint every so often, and its file bytes with one byte flipped."""

from __future__ import annotations

from pathlib import Path

from privacy.audit_log import AuditLog
from privacy.sealing import SealingKey
from privacy.signing import SigningKey

#: A plan hash some records carry.
PLAN = "ab" * 32

#: Records between the checkpoints :func:`fill` writes by default.
CHECKPOINT_EVERY = 50


def new_log(path: Path, party_key: SigningKey, auditor: SealingKey) -> AuditLog:
    """A new, empty log of site ``site-a`` at ``path``, sealed to ``auditor``."""
    return AuditLog.create(path, party="site-a", role="site", signing_key=party_key,
                           auditor_public_hex=auditor.public_hex)


def fill(log: AuditLog, n: int, *, every: int | None = CHECKPOINT_EVERY) -> None:
    """Append ``n`` training records to ``log``, checkpointing after every ``every``."""
    for i in range(n):
        log.append("training.round", actor="agent", plan_hash=PLAN if i % 2 else None,
                   details={"round": i, "note": f"event {i}"})
        if every and (i + 1) % every == 0:
            log.checkpoint()


def flip(data: bytes, offset: int, mask: int) -> bytes:
    """``data`` with the byte at ``offset`` XORed with ``mask``."""
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1:]


"""The site's tamper-evident audit trail: site records mirrored into the signed, encrypted log.

The site store keeps approvals, ledger entries and events append-only; this module copies
each new one into ``<site>/audit/site.log`` (privacy.audit_log: hash-chained, Merkle
checkpoints signed with the site's Ed25519 key, payloads encrypted to the auditor). The site
agent syncs when it starts, after every task and when it stops. A cursor in the store says
what was copied; the records of one sync go in with their checkpoint in one write and one
fsync (``AuditLog.append_many``). Copying is at-least-once (a crash between append and cursor
update repeats a record, which the log shows as a second record, never as tampering).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from client_app.custody.identity import signing_key
from client_app.custody.kit import load_site_identity
from client_app.custody.vault import SiteVault
from client_app.store.site_store import SiteStore
from common.errors import TesseraError
from privacy.audit_log import AuditLog, NewRecord, writer_lock
from privacy.signing import SigningKey

log = logging.getLogger(__name__)
_CURSOR = "audit_cursor"
#: Checkpoint after this many new records (and at every sync that added any).
CHECKPOINT_EVERY = 100


def log_path(vault: SiteVault) -> Path:
    """Where the site's audit log lives."""
    return vault.site.audit_log


#: The log this process last appended to, per (path, signing key), with the file's stamp
#: (device, inode, size, modification time) when it left it. Opening verifies the whole log,
#: which grows with the site's history, so a log whose file is still exactly as this process
#: left it is appended to without being read again; any other write to it (another process's
#: sync, a replacement, a change) changes the stamp and the log is opened and verified anew.
#: Tampering is not hidden either way: the signed checkpoints cover the records as written.
_KEPT: dict[tuple[Path, str], tuple[tuple[int, int, int, int], AuditLog]] = {}


def _stamp(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _open_log(vault: SiteVault, key: SigningKey) -> AuditLog:
    """The site's log, opened or created; the caller holds :func:`writer_lock`."""
    path = log_path(vault)
    if path.exists():
        kept = _KEPT.pop((path, key.public_hex), None)
        if kept is not None and kept[0] == _stamp(path):
            return kept[1]
        return AuditLog.open(path, signing_key=key)
    auditor = load_site_identity(vault.site.root).manifest.auditor_sealing_key
    return AuditLog.create(path, party=vault.site.name, role="site", signing_key=key,
                           auditor_public_hex=auditor)


def _plan(value: str | None) -> str | None:
    return value if value and len(value) == 64 else None


def sync(vault: SiteVault) -> int:
    """Copy every store record not yet in the log; returns how many were appended.

    The agent, the CLI and the app may sync at once: the log's writer lock covers the whole
    copy (open, append, checkpoint, cursor), so each record is appended once, in order.
    """
    key = signing_key(vault)
    if key is None:
        return 0  # an unprovisioned development site has no auditor to encrypt to
    path = log_path(vault)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with writer_lock(path):
        opened = _open_log(vault, key)
        appended = _copy_new(vault, opened)
        _KEPT[(path, key.public_hex)] = (_stamp(path), opened)  # only after a whole copy
        return appended


def _copy_new(vault: SiteVault, log: AuditLog) -> int:
    records: list[NewRecord] = []
    with SiteStore.open(vault.site) as store:
        cursor = json.loads(store.setting(_CURSOR) or "{}")
        for item in store.approvals(after=cursor.get("approval", 0)):
            records.append(NewRecord(f"study_{item.decision}", actor=item.actor or "operator",
                                     plan_hash=_plan(item.plan_hash),
                                     details={"note": item.note, "at": item.at.isoformat()}))
            cursor["approval"] = item.id
        for entry in store.ledger(after=cursor.get("ledger", 0)):
            records.append(NewRecord("epsilon_spent", actor="site-agent",
                                     plan_hash=_plan(entry.plan_hash), details=entry.to_json()))
            cursor["ledger"] = entry.id
        for event in store.events(after=cursor.get("event", 0)):
            records.append(NewRecord(event.kind.lower(), actor="site",
                                     plan_hash=_plan(event.plan_hash),
                                     details={**event.details, "at": event.at.isoformat()}))
            cursor["event"] = event.id
        if records:  # one write and one fsync for the records and their checkpoint
            log.append_many(records, checkpoint=True)
            store.put_setting(_CURSOR, json.dumps(cursor, sort_keys=True))
    return len(records)


def sync_quietly(vault: SiteVault) -> None:
    """Sync; an audit problem is logged loudly but does not stop the task it follows."""
    try:
        sync(vault)
    except TesseraError as err:
        log.warning("audit trail not updated: %s", err.code.value)

"""The coordinator's tamper-evident audit trail (``coordinator/audit/coordinator.log``).

After each study run the coordinator appends what it decided: the run, each round's
participants, every refused site and rejected envelope with its reason, and the registered
model, then signs a checkpoint. Payloads are encrypted to the auditor named in the signed
manifest; an unprovisioned (development) coordinator keeps no log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.workdir import CoordinatorDir
from privacy.audit_log import AuditLog, writer_lock
from privacy.manifest import MANIFEST_FILE, SIGNING_KEY_FILE, load_manifest
from privacy.signing import SigningKey


@contextmanager
def _opened(coordinator: Path) -> Iterator[AuditLog | None]:
    """The coordinator's log, opened (or created) under its writer lock for the whole
    block; None for an unprovisioned folder."""
    layout = CoordinatorDir(coordinator)
    kit = layout.kit_dir
    if not (kit / MANIFEST_FILE).exists() or not (kit / SIGNING_KEY_FILE).exists():
        yield None
        return
    key = SigningKey(bytes.fromhex((kit / SIGNING_KEY_FILE).read_text().strip()))
    path = layout.audit_log
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with writer_lock(path):
        if path.exists():
            yield AuditLog.open(path, signing_key=key)
            return
        manifest = load_manifest(kit / MANIFEST_FILE)
        yield AuditLog.create(path, party="coordinator", role="coordinator", signing_key=key,
                              auditor_public_hex=manifest.auditor_sealing_key)


def record_run(coordinator: Path, result: dict[str, Any]) -> int:
    """Append one run's decisions; returns the number of records written."""
    with _opened(coordinator) as log:
        if log is None:
            return 0
        return _append_run(log, result)


def _append_run(log: AuditLog, result: dict[str, Any]) -> int:
    plan = result.get("plan_hash")
    count = 0

    def add(event: str, details: dict[str, Any]) -> None:
        nonlocal count
        log.append(event, actor="coordinator", plan_hash=plan, details=details)
        count += 1

    for item in result.get("admission_refused", []):
        add("site_refused", {"round": 0, **item})
    for rnd in result.get("rounds", []):
        for item in rnd.get("refused_sites", []):
            add("site_refused", {"round": rnd["round"], **item})
        for item in rnd.get("rejected_envelopes", []):
            add("envelope_rejected", {"round": rnd["round"], **item})
        add("round_completed", {"round": rnd["round"],
                                "participating": rnd.get("participating_sites", [])})
    if result.get("model"):
        model = result["model"]
        add("model_registered", {"study": model.get("study"), "version": model.get("version"),
                                 "sha256": model.get("sha256")})
    add("study_run", {"run_id": result.get("run_id"), "status": result.get("status"),
                      "error": result.get("error")})
    log.checkpoint()
    return count


def record_event(coordinator: Path, event: str, *, actor: str, details: dict[str, Any],
                 plan_hash: str | None = None) -> bool:
    """Append one coordinator action (e.g. a model release) and sign a checkpoint.

    Returns False when the coordinator keeps no log (an unprovisioned development folder).
    """
    with _opened(coordinator) as log:
        if log is None:
            return False
        log.append(event, actor=actor, plan_hash=plan_hash, details=details)
        log.checkpoint()
        return True

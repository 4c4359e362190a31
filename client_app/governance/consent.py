"""Patient consent at a site: withdrawals and grants, per study or for every study.

Consent is an append-only list of events (``consent_events`` in the site store), one per
patient per change; nothing is edited in place. A patient's state for a study is the latest
event in that study's scope or in the global scope ``"*"``; with no event the patient is
included. Patient ids are patient data, so the store never holds them in plaintext: each
row carries ``patient_ref``, an HMAC-SHA256 of the id under a per-site consent key (kept in
the vault as the secret ``consent-key``), and ``patient_sealed``, the id encrypted under the
vault's data key. Each change also writes one site event (``consent_withdrawn``,
``consent_granted`` or ``consent_imported``) with counts and short ref prefixes, never ids.
The site agent applies withdrawals from the next task (see :func:`without_patients`).
"""

from __future__ import annotations

import base64
import csv
import hmac
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Literal

import numpy as np
from sqlmodel import Session, col, select

from client_app.custody.site_secrets import site_secret
from client_app.custody.vault import SiteVault
from client_app.store.site_store import SiteStore, site_transaction
from client_app.store.tables import (
    ConsentEventRow,
)
from common.datasets import PATIENT_ID, TableData
from common.errors import ErrorCode, TesseraError
from privacy.at_rest import decrypt_blob, encrypt_blob

GLOBAL_SCOPE = "*"
CONSENT_KEY = "consent-key"
#: Blob role of a sealed patient id.
ROLE_PATIENT_ID = "patient-id"
MAX_ID_CHARS = 128
MAX_LIST_BYTES = 64 * 1024 * 1024
#: At most this many ref prefixes go into one site event (the count is always exact).
MAX_EVENT_REFS = 500
_REF_PREFIX = 8

Action = Literal["withdraw", "grant"]
_EVENT_KINDS: dict[str, str] = {"withdraw": "consent_withdrawn", "grant": "consent_granted"}


@dataclass(frozen=True)
class ConsentEvent:
    """One consent change, with the patient id decrypted (memory only, never logged)."""

    id: int
    at: datetime
    scope: str
    action: str
    patient_id: str
    source: str
    batch: str | None
    actor: str
    note: str

    def to_json(self) -> dict[str, object]:
        """JSON-ready fields (this holds a patient id: for the site operator's eyes only)."""
        return {"id": self.id, "at": self.at.isoformat(), "scope": self.scope,
                "action": self.action, "patient_id": self.patient_id, "source": self.source,
                "batch": self.batch, "actor": self.actor, "note": self.note}


@dataclass(frozen=True)
class ImportResult:
    """What an opt-out list import changed."""

    batch: str
    withdrawn: int
    unchanged: int


# -- validation --------------------------------------------------------------------------------


def _require_text(value: object, *, name: str, limit: int = 128) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{name}: must be a non-empty string of at most {limit} characters")
    return value.strip()


def _require_scope(scope: object) -> str:
    text = _require_text(scope, name="scope")
    if any(not ch.isprintable() for ch in text):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "scope: must be a study name or '*'")
    return text


def _clean_id(value: object, *, where: str) -> str:
    """A patient id, stripped; the message names where it was, never what it was."""
    if not isinstance(value, str):
        raise TesseraError(ErrorCode.DATA_INVALID, f"{where}: patient id must be text")
    text = value.strip()
    if not text:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{where}: empty patient id")
    if len(text) > MAX_ID_CHARS or any(not ch.isprintable() for ch in text):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{where}: not a patient id (at most {MAX_ID_CHARS} printable "
                           "characters)")
    return text


def _unique_ids(patient_ids: Sequence[str]) -> list[str]:
    if isinstance(patient_ids, str):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "patient_ids: must be a list of ids")
    ids = [_clean_id(p, where=f"patient id {i}") for i, p in enumerate(patient_ids, start=1)]
    if not ids:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "patient_ids: no patient id given")
    return list(dict.fromkeys(ids))


# -- keys and sealing --------------------------------------------------------------------------


def _consent_key(vault: SiteVault) -> bytes:
    """The site's consent HMAC key, created on first use (two writers agree on one key)."""
    return site_secret(vault, CONSENT_KEY)


def patient_ref(key: bytes, patient_id: str) -> str:
    """The keyed hash stored in place of a patient id."""
    return hmac.new(key, patient_id.encode("utf-8"), sha256).hexdigest()


def _seal(vault: SiteVault, patient_id: str) -> str:
    blob = encrypt_blob(vault.key, patient_id.encode("utf-8"), role=ROLE_PATIENT_ID)
    return base64.b64encode(blob).decode("ascii")


def _unseal(vault: SiteVault, sealed: str) -> str:
    return decrypt_blob(vault.key, base64.b64decode(sealed), role=ROLE_PATIENT_ID).decode()


# -- the store ---------------------------------------------------------------------------------




def _rows(session: Session) -> list[ConsentEventRow]:
    return list(session.exec(select(ConsentEventRow).order_by(col(ConsentEventRow.id))).all())


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class _States:
    """Each patient's consent state per scope, from the events in order."""

    def __init__(self, rows: Sequence[ConsentEventRow]) -> None:
        # ref -> (global action or None, {study: action after the last global event})
        self._by_ref: dict[str, tuple[str | None, dict[str, str]]] = {}
        self.sealed: dict[str, str] = {}
        for row in rows:
            current, studies = self._by_ref.get(row.patient_ref, (None, {}))
            if row.scope == GLOBAL_SCOPE:
                self._by_ref[row.patient_ref] = (row.action, {})
            else:
                self._by_ref[row.patient_ref] = (current, {**studies, row.scope: row.action})
            self.sealed[row.patient_ref] = row.patient_sealed

    def action(self, ref: str, study: str) -> str:
        """The patient's effective state for ``study`` ("grant" when nothing was recorded)."""
        current, studies = self._by_ref.get(ref, (None, {}))
        return studies.get(study, current or "grant")

    def unchanged_by(self, ref: str, scope: str, action: str) -> bool:
        """Whether recording ``action`` in ``scope`` would change no study's outcome."""
        if scope != GLOBAL_SCOPE:
            return self.action(ref, scope) == action
        current, studies = self._by_ref.get(ref, (None, {}))
        return (current or "grant") == action and all(a == action for a in studies.values())

    def withdrawn(self, study: str) -> list[str]:
        return [ref for ref in self._by_ref if self.action(ref, study) == "withdraw"]


def _record(vault: SiteVault, ids: list[str], *, action: Action, scope: str, actor: str,
            note: str, source: str, batch: str | None, event_kind: str) -> tuple[int, int]:
    """Append one event per patient whose state changes; returns (written, unchanged)."""
    key = _consent_key(vault)
    refs = [patient_ref(key, p) for p in ids]
    now = datetime.now(UTC)
    with site_transaction(vault.site, write=True) as session:
        states = _States(_rows(session))
        changed = [(p, r) for p, r in zip(ids, refs, strict=True)
                   if not states.unchanged_by(r, scope, action)]
        for patient_id, ref in changed:
            session.add(ConsentEventRow(
                at=now, scope=scope, action=action, patient_ref=ref,
                patient_sealed=_seal(vault, patient_id), source=source, batch=batch,
                actor=actor, note=note,
            ))
        if changed or source == "import":
            details: dict[str, object] = {
                "scope": scope, "count": len(changed), "batch": batch, "actor": actor,
                "refs": [r[:_REF_PREFIX] for _, r in changed[:MAX_EVENT_REFS]],
            }
            if source == "import":
                details["unchanged"] = len(ids) - len(changed)
            if len(changed) > MAX_EVENT_REFS:
                details["refs_omitted"] = len(changed) - MAX_EVENT_REFS
            session.add(SiteStore.event_row(event_kind, plan_hash=None, details=details))
    return len(changed), len(ids) - len(changed)


# -- the API -----------------------------------------------------------------------------------


def withdraw(vault: SiteVault, patient_ids: Sequence[str], *, actor: str,
             scope: str = GLOBAL_SCOPE, note: str = "") -> int:
    """Withdraw consent for ``patient_ids`` in ``scope``; returns the events written.

    Patients already withdrawn there (and repeats in the list) write nothing.
    """
    ids = _unique_ids(patient_ids)
    written, _ = _record(vault, ids, action="withdraw", scope=_require_scope(scope),
                         actor=_require_text(actor, name="actor"), note=note, source="manual",
                         batch=None, event_kind=_EVENT_KINDS["withdraw"])
    return written


def grant(vault: SiteVault, patient_ids: Sequence[str], *, actor: str,
          scope: str = GLOBAL_SCOPE, note: str = "") -> int:
    """Grant (restore) consent for ``patient_ids`` in ``scope``; returns the events written."""
    ids = _unique_ids(patient_ids)
    written, _ = _record(vault, ids, action="grant", scope=_require_scope(scope),
                         actor=_require_text(actor, name="actor"), note=note, source="manual",
                         batch=None, event_kind=_EVENT_KINDS["grant"])
    return written


def read_opt_out_list(path: Path) -> list[str]:
    """Patient ids of an opt-out file: a CSV with a ``patient_id`` column, or one id per line.

    Repeats are dropped (first one kept). A bad file raises DATA_INVALID naming the line,
    never its content.
    """
    file = Path(path)
    if not file.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"no opt-out file '{file.name}'")
    if file.stat().st_size > MAX_LIST_BYTES:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{file.name}: file too large")
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{file.name}: not UTF-8 text") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{file.name}: not valid CSV") from None
    numbered = [(n, row) for n, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if not numbered:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{file.name}: no patient ids")
    header = [c.strip() for c in numbered[0][1]]
    if PATIENT_ID in header:
        column, body = header.index(PATIENT_ID), numbered[1:]
        width = len(header)
    elif len(header) > 1:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{file.name}: a CSV opt-out list needs a '{PATIENT_ID}' column")
    else:
        column, body, width = 0, numbered, 1
    ids: list[str] = []
    for number, row in body:
        if len(row) != width:
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"{file.name}: line {number} has {len(row)} cells, expected "
                               f"{width}")
        ids.append(_clean_id(row[column], where=f"{file.name}: line {number}"))
    if not ids:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{file.name}: no patient ids")
    return list(dict.fromkeys(ids))


def import_opt_out(vault: SiteVault, path: Path, *, actor: str,
                   scope: str = GLOBAL_SCOPE) -> ImportResult:
    """Withdraw everyone on an opt-out list, as one batch; a bad file writes nothing."""
    actor = _require_text(actor, name="actor")
    scope = _require_scope(scope)
    ids = read_opt_out_list(path)
    batch = uuid.uuid4().hex[:16]
    written, unchanged = _record(vault, ids, action="withdraw", scope=scope, actor=actor,
                                 note=f"opt-out list {Path(path).name}", source="import",
                                 batch=batch, event_kind="consent_imported")
    return ImportResult(batch=batch, withdrawn=written, unchanged=unchanged)


def history(vault: SiteVault, *, scope: str | None = None) -> list[ConsentEvent]:
    """Every consent event (or those of one scope), newest first, with ids decrypted."""
    with site_transaction(vault.site) as session:
        rows = _rows(session)
    return [
        ConsentEvent(id=r.id or 0, at=_utc(r.at), scope=r.scope, action=r.action,
                     patient_id=_unseal(vault, r.patient_sealed), source=r.source,
                     batch=r.batch, actor=r.actor, note=r.note)
        for r in reversed(rows) if scope is None or r.scope == scope
    ]


def withdrawn_ids(vault: SiteVault, *, study: str) -> frozenset[str]:
    """Patients whose latest consent event for ``study`` (or globally) is a withdrawal."""
    study = _require_scope(study)
    with site_transaction(vault.site) as session:
        rows = _rows(session)
    if not rows:
        return frozenset()
    states = _States(rows)
    return frozenset(_unseal(vault, states.sealed[ref]) for ref in states.withdrawn(study))


def without_patients(table: TableData, excluded: frozenset[str]) -> tuple[TableData, int]:
    """``table`` without the rows of ``excluded`` patients, and how many rows went."""
    if not excluded or table.n_rows == 0:
        return table, 0
    keep = ~np.isin(table.patient_ids, np.array(sorted(excluded), dtype=str))
    dropped = int(table.n_rows - keep.sum())
    return (table.take(np.flatnonzero(keep)) if dropped else table), dropped


def apply_consent(vault: SiteVault, study: str, train: TableData,
                  test: TableData) -> tuple[TableData, TableData, int]:
    """A study's train and held-out rows without its withdrawn patients, and how many went.

    Called after the split, so every other patient keeps its train or test assignment.
    """
    excluded = withdrawn_ids(vault, study=study)
    train, from_train = without_patients(train, excluded)
    test, from_test = without_patients(test, excluded)
    if excluded and (train.n_rows == 0 or test.n_rows == 0):
        part = "training" if train.n_rows == 0 else "held-out"
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"consent withdrawals leave no {part} rows for study '{study}' "
                           "at this site")
    return train, test, from_train + from_test

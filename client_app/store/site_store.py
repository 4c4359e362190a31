"""The site store: approvals, the privacy ledger, site events and the privacy settings.

SQLModel over SQLite by default (any SQLAlchemy URL works). The schema comes only from the
Alembic migrations of :mod:`client_app.store.tables`, applied when a store opens.
``approvals``, ``ledger`` and ``events`` are append-only; ``settings`` is the one mutable
table. Several processes (the site agent, a CLI command, the desktop app) may open the same
``site.db``; transactions are short and writes hold SQLite's write lock from their start.
A long-lived process (the site agent) may keep one engine for its site
(:class:`client_app.store.kept_engine.KeptEngine`) and lend it, for the length of one task, to
every store of that site the task opens: each open then costs neither a new engine nor a
migration check, and statements compile once per process instead of once per open.
The ledger (:mod:`client_app.store.ledger`) and the privacy settings
(:mod:`client_app.store.privacy_settings`) keep their own rules. The store holds no key: a
store that records ledger entries is opened with the site's :class:`LedgerKey`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from client_app.store.ledger import Ledger
from client_app.store.ledger_chain import HEAD_KEY, LedgerCheck, LedgerKey
from client_app.store.privacy_settings import PROTECTED_KEYS, PrivacySettings
from client_app.store.records import (
    ApprovalRecord,
    BudgetCheck,
    EventRecord,
    LedgerRecord,
    ReleaseKind,
    SiteDelta,
    approval_record,
    event_record,
)
from client_app.store.tables import (
    MIGRATIONS_DIR,
    ApprovalRow,
    EventRow,
    SettingRow,
)
from common.errors import ErrorCode, TesseraError
from common.files import ensure_private_file
from common.sql import SqlStore
from common.workdir import SiteDir

__all__ = ["ApprovalRecord", "BudgetCheck", "EventRecord", "LedgerCheck", "LedgerKey",
           "LedgerRecord", "ReleaseKind", "SiteDelta", "SiteStore", "site_transaction"]

Decision = Literal["approved", "revoked", "rejected"]

#: The engine a task lends to every store of one site database it opens (the database's
#: resolved path, the engine), set only by :class:`client_app.store.kept_engine.KeptEngine`.
LENT_ENGINE: ContextVar[tuple[Path, Engine] | None] = ContextVar("tessera_lent_site_engine",
                                                                default=None)


def _require_text(value: str, *, name: str, limit: int = 128) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"{name}: must be a non-empty string of at most {limit} characters",
        )
    return value


class SiteStore(SqlStore, Ledger, PrivacySettings):
    """Approvals, ledger, events and settings of one site.

    ``ledger_key`` (from the site's vault) lets the store record and verify ledger
    entries; without it the ledger is read-only.
    """

    def __init__(self, url: str, *, ledger_key: LedgerKey | None = None,
                 engine: Engine | None = None) -> None:
        if engine is None:
            super().__init__(url, MIGRATIONS_DIR)
        else:  # a lent engine, already migrated by its keeper: closing leaves it open
            self._engine = engine
        self._owns_engine = engine is None
        self._ledger_key = ledger_key

    @classmethod
    def open(cls, site_dir: SiteDir, *, ledger_key: LedgerKey | None = None) -> SiteStore:
        """Open (and migrate) the store of a site folder; on the engine lent for the running
        task when one is lent for this folder's database."""
        lent = LENT_ENGINE.get()
        if lent is not None and lent[0] == site_dir.db_path.resolve():
            return cls(site_dir.db_url, ledger_key=ledger_key, engine=lent[1])
        ensure_private_file(site_dir.db_path)
        return cls(site_dir.db_url, ledger_key=ledger_key)

    def close(self) -> None:
        """Release the engine's connections (a lent engine stays with its keeper)."""
        if self._owns_engine:
            super().close()

    # -- approvals ---------------------------------------------------------------------------

    def approve(self, plan_hash: str, *, actor: str, note: str = "") -> None:
        self._decide(plan_hash, "approved", actor=actor, note=note)

    def reject(self, plan_hash: str, *, actor: str, note: str = "") -> None:
        self._decide(plan_hash, "rejected", actor=actor, note=note)

    def revoke(self, plan_hash: str, *, actor: str, note: str = "") -> None:
        self._decide(plan_hash, "revoked", actor=actor, note=note)

    def _decide(self, plan_hash: str, decision: Decision, *, actor: str, note: str) -> None:
        _require_text(plan_hash, name="plan_hash")
        _require_text(actor, name="actor")
        with self._transaction(write=True) as session:
            session.add(
                ApprovalRow(
                    at=datetime.now(UTC), plan_hash=plan_hash, decision=decision,
                    actor=actor, note=note,
                )
            )

    def is_approved(self, plan_hash: str) -> bool:
        """True if the latest decision about ``plan_hash`` is "approved"."""
        with self._transaction() as session:
            latest = session.exec(
                select(ApprovalRow)
                .where(ApprovalRow.plan_hash == plan_hash)
                .order_by(col(ApprovalRow.id).desc())
                .limit(1)
            ).first()
            return latest is not None and latest.decision == "approved"

    def approvals(self, *, after: int = 0) -> list[ApprovalRecord]:
        """Every decision (or those with an id above ``after``), oldest first."""
        with self._transaction() as session:
            rows = session.exec(select(ApprovalRow).where(col(ApprovalRow.id) > after)
                                .order_by(col(ApprovalRow.id))).all()
            return [approval_record(r) for r in rows]

    # -- internal settings (e.g. the audit-trail cursor) ---------------------------------------

    def setting(self, key: str) -> str | None:
        """An internal setting's value, or None."""
        with self._transaction() as session:
            row = session.get(SettingRow, _require_text(key, name="key"))
            return None if row is None else row.value

    def put_setting(self, key: str, value: str) -> None:
        """Set an internal setting (not a privacy setting nor the ledger head: those have
        their own methods and rules)."""
        if key in PROTECTED_KEYS or key == HEAD_KEY:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"key: '{key}' is changed only through its own method")
        with self._transaction(write=True) as session:
            row = session.get(SettingRow, _require_text(key, name="key"))
            row = SettingRow(key=key, value=value) if row is None else row
            row.value = value
            session.add(row)

    # -- events ------------------------------------------------------------------------------

    def record_event(
        self, kind: str, *, plan_hash: str | None = None, details: dict[str, object] | None = None
    ) -> EventRecord:
        """Append a site event; ``details`` must be JSON-serialisable and free of patient data."""
        _require_text(kind, name="kind", limit=64)
        with self._transaction(write=True) as session:
            row = self._event_row(kind, plan_hash=plan_hash, details=details or {})
            session.add(row)
            session.flush()
            return event_record(row)

    def events(self, *, kind: str | None = None, after: int = 0) -> list[EventRecord]:
        """Site events (of one kind, or all; with an id above ``after``), oldest first."""
        query = select(EventRow).where(col(EventRow.id) > after)
        if kind is not None:
            query = query.where(EventRow.kind == kind)
        with self._transaction() as session:
            rows = session.exec(query.order_by(col(EventRow.id))).all()
            return [event_record(r) for r in rows]

    def transaction(self, *, write: bool = False) -> AbstractContextManager[Session]:
        """A short transaction for the site services that keep their own tables in this store
        (dataset versions, consent, received plans); ``write`` takes SQLite's lock at once."""
        return self._transaction(write=write)

    @staticmethod
    def event_row(kind: str, *, plan_hash: str | None, details: dict[str, object]) -> EventRow:
        """A site event row to add in the caller's transaction (details must be JSON)."""
        return SiteStore._event_row(kind, plan_hash=plan_hash, details=details)

    @staticmethod
    def _event_row(kind: str, *, plan_hash: str | None, details: dict[str, object]) -> EventRow:
        try:
            text = json.dumps(details, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID, "details: must be JSON-serialisable, with finite numbers"
            ) from exc
        return EventRow(at=datetime.now(UTC), kind=kind, plan_hash=plan_hash, details=text)


@contextmanager
def site_transaction(site: SiteDir, *, write: bool = False) -> Iterator[Session]:
    """Open a site's store (migrating it) for one short transaction, then close it."""
    with SiteStore.open(site) as store, store.transaction(write=write) as session:
        yield session

"""The site store: approvals, the privacy ledger, site events and the privacy ceiling.

SQLModel over SQLite by default (any SQLAlchemy URL works). The schema comes only from the
Alembic migrations of :mod:`client_app.store.tables`, applied when a store opens.
``approvals``, ``ledger`` and ``events`` are append-only; ``settings`` is the one mutable
table. Several processes (the site agent, a CLI command, the desktop app) may open the same
``site.db``; transactions are short and writes hold SQLite's write lock from their start.
The ledger keeps its own rule: a run is stored only if its cumulative epsilon was composed
over the dataset's whole history and does not go past the site's ceiling, both checked in
the transaction that inserts it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal, Self

import sqlalchemy as sa
from sqlmodel import Session, col, select

from client_app.store.records import (
    ApprovalRecord,
    BudgetCheck,
    EventRecord,
    LedgerRecord,
    approval_record,
    event_record,
    ledger_record,
)
from client_app.store.tables import (
    MIGRATIONS_DIR,
    ApprovalRow,
    EventRow,
    LedgerRow,
    SettingRow,
)
from common.errors import ErrorCode, TesseraError
from common.files import ensure_private_file
from common.settings import DEFAULT_CEILING
from common.sql import READ_ONLY, make_engine, migrate
from common.workdir import SiteDir
from privacy.accounting import DpStep, epsilon_for_history

__all__ = ["ApprovalRecord", "BudgetCheck", "EventRecord", "LedgerRecord", "SiteStore",
           "site_transaction"]

_CEILING_KEY = "privacy_ceiling"
Decision = Literal["approved", "revoked", "rejected"]


def _require_text(value: str, *, name: str, limit: int = 128) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"{name}: must be a non-empty string of at most {limit} characters",
        )
    return value


class SiteStore:
    """Approvals, ledger, events and settings of one site."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url)
        migrate(self._engine, MIGRATIONS_DIR)

    @classmethod
    def open(cls, site_dir: SiteDir) -> SiteStore:
        """Open (and migrate) the store of a site folder."""
        ensure_private_file(site_dir.db_path)
        return cls(site_dir.db_url)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Session]:
        """A short transaction; only ``write`` ones take SQLite's write lock."""
        bind = self._engine if write else self._engine.execution_options(**{READ_ONLY: True})
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

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

    def approvals(self) -> list[ApprovalRecord]:
        with self._transaction() as session:
            rows = session.exec(select(ApprovalRow).order_by(col(ApprovalRow.id))).all()
            return [approval_record(r) for r in rows]

    # -- privacy ceiling ---------------------------------------------------------------------

    def ceiling(self) -> float:
        """The site's privacy ceiling (epsilon per dataset); ``DEFAULT_CEILING`` unless set."""
        with self._transaction() as session:
            return _ceiling_in(session)

    def set_ceiling(self, value: float, *, actor: str, confirm_raise: bool = False) -> None:
        """Set the ceiling; lowering is always allowed, raising needs ``confirm_raise``."""
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value <= 0:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID, f"ceiling: must be a finite number > 0, got {value!r}"
            )
        _require_text(actor, name="actor")
        value = float(value)
        with self._transaction(write=True) as session:
            row = session.get(SettingRow, _CEILING_KEY)
            current = _ceiling_in(session)
            if row is not None and value == current:
                return
            if value > current and not confirm_raise:
                raise TesseraError(
                    ErrorCode.PERMISSION_DENIED,
                    f"raising the privacy ceiling from {current:g} to {value:g} "
                    "requires confirmation",
                )
            if row is None:
                row = SettingRow(key=_CEILING_KEY, value=repr(value))
            else:
                row.value = repr(value)
            session.add(row)
            session.add(self._event_row("ceiling_changed", plan_hash=None, details={
                "old": current, "new": value, "actor": actor,
            }))

    # -- internal settings (e.g. the audit-trail cursor) ---------------------------------------

    def setting(self, key: str) -> str | None:
        """An internal setting's value, or None."""
        with self._transaction() as session:
            row = session.get(SettingRow, _require_text(key, name="key"))
            return None if row is None else row.value

    def put_setting(self, key: str, value: str) -> None:
        """Set an internal setting (not the ceiling: use :meth:`set_ceiling`)."""
        if key == _CEILING_KEY:
            raise TesseraError(ErrorCode.PERMISSION_DENIED, "use set_ceiling for the ceiling")
        with self._transaction(write=True) as session:
            row = session.get(SettingRow, _require_text(key, name="key"))
            row = SettingRow(key=key, value=value) if row is None else row
            row.value = value
            session.add(row)

    # -- ledger ------------------------------------------------------------------------------

    def dp_history(self, dataset_id: str) -> list[DpStep]:
        """Every recorded DP-SGD run on ``dataset_id``, oldest first."""
        return [r.step for r in self.ledger(dataset_id=dataset_id)]

    def projected_epsilon(
        self, dataset_id: str, extra: Sequence[DpStep], *, delta: float
    ) -> float:
        """Cumulative epsilon of ``dataset_id`` if the ``extra`` runs were added."""
        return epsilon_for_history([*self.dp_history(dataset_id), *extra], delta=delta)

    def check_training(
        self, dataset_id: str, extra: Sequence[DpStep], *, delta: float
    ) -> BudgetCheck:
        """Whether the ``extra`` runs on ``dataset_id`` would fit under the site's ceiling.

        Asks only: :meth:`record_training` checks again when it stores a run, so a run that
        fitted here is still refused if the ceiling was lowered (or another run recorded)
        in the meantime.
        """
        projected = self.projected_epsilon(dataset_id, extra, delta=delta)
        return BudgetCheck(dataset_id=dataset_id, projected=projected, ceiling=self.ceiling())

    def record_training(
        self, *, plan_hash: str, study: str, round: int, dataset_id: str,
        dataset_version: str, noise_multiplier: float, sample_rate: float, steps: int,
        delta: float,
    ) -> LedgerRecord:
        """Append one DP-SGD run; stores its epsilon and the dataset's cumulative epsilon.

        Refuses (BUDGET_EXCEEDED, nothing stored) a run that would push the dataset's
        cumulative epsilon past the site's ceiling, read in the inserting transaction.
        """
        for name, text in (("plan_hash", plan_hash), ("study", study),
                           ("dataset_id", dataset_id), ("dataset_version", dataset_version)):
            _require_text(text, name=name)
        if isinstance(round, bool) or not isinstance(round, int) or round < 0:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID, f"round: must be an integer >= 0, got {round!r}"
            )
        step = DpStep(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        epsilon = epsilon_for_history([step], delta=delta)  # validates delta too
        while True:
            # The accountant is slow next to a lock: compose outside the write transaction,
            # then store only if no run on this dataset was recorded in the meantime and the
            # ceiling, as it stands now, still allows it.
            prior = self.ledger(dataset_id=dataset_id)
            cumulative = epsilon_for_history([*(r.step for r in prior), step], delta=delta)
            with self._transaction(write=True) as session:
                last_id = session.exec(
                    select(sa.func.max(LedgerRow.id)).where(LedgerRow.dataset_id == dataset_id)
                ).one()
                if last_id != (prior[-1].id if prior else None):
                    continue
                check = BudgetCheck(dataset_id=dataset_id, projected=cumulative,
                                    ceiling=_ceiling_in(session))
                if not check.allowed:
                    raise check.refusal()
                row = LedgerRow(
                    at=datetime.now(UTC), plan_hash=plan_hash, study=study, round=round,
                    dataset_id=dataset_id, dataset_version=dataset_version,
                    noise_multiplier=step.noise_multiplier, sample_rate=step.sample_rate,
                    steps=steps, delta=float(delta), epsilon=epsilon,
                    epsilon_cumulative=cumulative,
                )
                session.add(row)
                session.flush()
                return ledger_record(row)

    def ledger(self, *, dataset_id: str | None = None) -> list[LedgerRecord]:
        """Ledger entries (all, or of one dataset), oldest first."""
        query = select(LedgerRow)
        if dataset_id is not None:
            query = query.where(LedgerRow.dataset_id == dataset_id)
        with self._transaction() as session:
            rows = session.exec(query.order_by(col(LedgerRow.id))).all()
            return [ledger_record(r) for r in rows]

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

    def events(self, *, kind: str | None = None) -> list[EventRecord]:
        query = select(EventRow)
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


def _ceiling_in(session: Session) -> float:
    """The ceiling as the transaction of ``session`` sees it."""
    row = session.get(SettingRow, _CEILING_KEY)
    return float(row.value) if row is not None else DEFAULT_CEILING


@contextmanager
def site_transaction(site: SiteDir, *, write: bool = False) -> Iterator[Session]:
    """Open a site's store (migrating it) for one short transaction, then close it."""
    with SiteStore.open(site) as store, store.transaction(write=write) as session:
        yield session

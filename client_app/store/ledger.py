"""The privacy ledger of a site store: every release on every dataset, authenticated.

Each entry is one release (a DP-SGD round, noisy statistics, evaluation counts, feature
importance, leave-one-site-out counts...) as a mechanism of :mod:`privacy.mechanisms` with
its parameters, what it was for (plan, study, run, round, dataset version), the site's
delta it was accounted at, its own epsilon and the dataset's cumulative epsilon: the PLD
composition of *every* entry on the dataset, at the site's delta (never a plan's).

The ledger keeps its own rules, each checked in the transaction that inserts an entry:

- nothing is recorded past the site's ceiling (:data:`~client_app.store.records.BudgetCheck`);
  the history is composed outside the write lock (the accountant is slow next to a lock)
  and the insert happens only if no entry on the dataset was recorded and the delta did
  not change in the meantime (otherwise it composes again);
- nothing is recorded on a ledger that fails its integrity check, and every entry is MACed
  and chained (:mod:`client_app.store.ledger_chain`) under the key the store was opened
  with; a store opened without the key reads the ledger but records nothing.

Mixed into :class:`~client_app.store.site_store.SiteStore`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from client_app.store.events import SiteEvent
from client_app.store.ledger_chain import (
    GENESIS,
    HEAD_KEY,
    LedgerCheck,
    LedgerHead,
    LedgerKey,
    entry_mac,
    verify_chain,
)
from client_app.store.privacy_settings import ceiling_in, delta_in
from client_app.store.records import BudgetCheck, LedgerRecord, ReleaseKind, ledger_record
from client_app.store.tables import EventRow, LedgerRow, SettingRow
from common.errors import ErrorCode, TesseraError
from privacy.ledger_epsilon import ledger_epsilon as epsilon_for_history
from privacy.mechanisms import DpStep, GaussianRelease, Mechanism


def _text(value: str, *, name: str, limit: int = 128) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{name}: must be a non-empty string of at most {limit} characters")
    return value


def _kind(kind: str) -> str:
    try:
        return ReleaseKind(kind).value
    except ValueError:
        allowed = ", ".join(k.value for k in ReleaseKind)
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"kind: must be one of {allowed}, got {kind!r}") from None


def _mechanism(mechanism: object) -> Mechanism:
    if not isinstance(mechanism, DpStep | GaussianRelease):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "mechanism: must be a DpStep or a GaussianRelease, got "
                           f"{type(mechanism).__name__}")
    return mechanism


def _parameters(mechanism: Mechanism) -> str:
    doc = {k: v for k, v in mechanism.to_json().items() if k != "mechanism"}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _all_rows(session: Session) -> list[LedgerRow]:
    return list(session.exec(select(LedgerRow).order_by(col(LedgerRow.id))).all())


def _head_text(session: Session) -> str | None:
    row = session.get(SettingRow, HEAD_KEY)
    return None if row is None else row.value


class Ledger:
    """The privacy ledger of a site store (a mixin)."""

    _ledger_key: LedgerKey | None

    def _transaction(self, *, write: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError  # pragma: no cover - provided by SiteStore

    @staticmethod
    def _event_row(kind: str, *, plan_hash: str | None,
                   details: dict[str, object]) -> EventRow:
        raise NotImplementedError  # pragma: no cover - provided by SiteStore

    # -- reading -------------------------------------------------------------------------

    def ledger(self, *, dataset_id: str | None = None, after: int = 0) -> list[LedgerRecord]:
        """Ledger entries (all, or of one dataset; with an id above ``after``), oldest first."""
        query = select(LedgerRow).where(col(LedgerRow.id) > after)
        if dataset_id is not None:
            query = query.where(LedgerRow.dataset_id == dataset_id)
        with self._transaction() as session:
            rows = session.exec(query.order_by(col(LedgerRow.id))).all()
            return [ledger_record(r) for r in rows]

    def history(self, dataset_id: str) -> list[Mechanism]:
        """Every release recorded on ``dataset_id``, as mechanisms, oldest first."""
        return [r.mechanism for r in self.ledger(dataset_id=dataset_id)]

    # -- asking first --------------------------------------------------------------------

    def projected_epsilon(self, dataset_id: str, extra: Sequence[Mechanism]) -> float:
        """Cumulative epsilon of ``dataset_id``, at the site's delta, with ``extra`` added."""
        return self.check_release(dataset_id, extra).projected

    def check_release(self, dataset_id: str, extra: Sequence[Mechanism]) -> BudgetCheck:
        """Whether the ``extra`` releases on ``dataset_id`` fit under the site's ceiling.

        Asks only: :meth:`record_release` checks again when it stores a release, so one that
        fitted here is still refused if the ceiling or the delta changed (or another release
        was recorded) in the meantime.
        """
        _text(dataset_id, name="dataset_id")
        added = [_mechanism(m) for m in extra]
        with self._transaction() as session:
            rows = session.exec(select(LedgerRow).where(LedgerRow.dataset_id == dataset_id)
                                .order_by(col(LedgerRow.id))).all()
            prior = [ledger_record(r).mechanism for r in rows]
            delta = delta_in(session, dataset_id).value
            ceiling = ceiling_in(session)
        projected = epsilon_for_history([*prior, *added], delta=delta)
        return BudgetCheck(dataset_id=dataset_id, projected=projected, ceiling=ceiling,
                           delta=delta)

    # -- recording -----------------------------------------------------------------------

    def record_release(
        self, *, mechanism: Mechanism, kind: str, plan_hash: str, study: str, run_id: str,
        round: int, dataset_id: str, dataset_version: str,
    ) -> LedgerRecord:
        """Append one release; stores its epsilon and the dataset's cumulative epsilon.

        Refuses, storing nothing: BUDGET_EXCEEDED for a release that would push the
        dataset's cumulative epsilon past the ceiling; DATA_INVALID on a ledger that fails
        its integrity check; KEY_MISSING on a store opened without the ledger key.
        """
        for name, text in (("plan_hash", plan_hash), ("study", study), ("run_id", run_id),
                           ("dataset_id", dataset_id), ("dataset_version", dataset_version)):
            _text(text, name=name)
        kind = _kind(kind)
        mechanism = _mechanism(mechanism)
        if isinstance(round, bool) or not isinstance(round, int) or round < 0:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"round: must be an integer >= 0, got {round!r}")
        key = self._require_key()
        while True:
            prior = self.ledger(dataset_id=dataset_id)
            with self._transaction() as session:
                delta = delta_in(session, dataset_id).value
            epsilon = epsilon_for_history([mechanism], delta=delta)
            cumulative = epsilon_for_history([*(r.mechanism for r in prior), mechanism],
                                             delta=delta)
            with self._transaction(write=True) as session:
                last_id = session.exec(
                    select(sa.func.max(LedgerRow.id)).where(LedgerRow.dataset_id == dataset_id)
                ).one()
                if last_id != (prior[-1].id if prior else None) \
                        or delta_in(session, dataset_id).value != delta:
                    continue
                rows = _all_rows(session)
                integrity = verify_chain(rows, _head_text(session), key)
                if not integrity.ok:
                    raise integrity.refusal()
                check = BudgetCheck(dataset_id=dataset_id, projected=cumulative,
                                    ceiling=ceiling_in(session), delta=delta)
                if not check.allowed:
                    raise check.refusal()
                row = LedgerRow(
                    at=datetime.now(UTC), kind=kind, mechanism=mechanism.mechanism,
                    parameters=_parameters(mechanism), plan_hash=plan_hash, study=study,
                    run_id=run_id, round=round, dataset_id=dataset_id,
                    dataset_version=dataset_version, delta=delta, epsilon=epsilon,
                    epsilon_cumulative=cumulative,
                )
                session.add(row)
                session.flush()
                previous = (rows[-1].mac or "") if rows else GENESIS
                row.mac = entry_mac(key, previous, row)
                assert row.id is not None
                _put_head(session, LedgerHead(len(rows) + 1, row.id, row.mac), key)
                session.add(row)
                session.flush()
                return ledger_record(row)

    def record_training(
        self, *, plan_hash: str, study: str, run_id: str, round: int, dataset_id: str,
        dataset_version: str, noise_multiplier: float, sample_rate: float, steps: int,
    ) -> LedgerRecord:
        """Append one DP-SGD round (:meth:`record_release` of a :class:`DpStep`)."""
        step = DpStep(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        return self.record_release(
            mechanism=step, kind=ReleaseKind.DP_SGD, plan_hash=plan_hash, study=study,
            run_id=run_id, round=round, dataset_id=dataset_id, dataset_version=dataset_version)

    # -- integrity -----------------------------------------------------------------------

    def verify_ledger(self) -> LedgerCheck:
        """Check the whole chain under the store's ledger key (KEY_MISSING without one)."""
        key = self._require_key()
        with self._transaction() as session:
            return verify_chain(_all_rows(session), _head_text(session), key)

    def seal_ledger(self) -> int:
        """MAC and chain entries recorded before the ledger was authenticated.

        Only a ledger that has no head and no MACed entry is sealed (all of it, in order,
        then its head is written); returns how many entries were sealed (0 otherwise).
        Whether sealing is legitimate is the caller's call (see
        :func:`client_app.governance.ledger.check_ledger`).
        """
        key = self._require_key()
        with self._transaction(write=True) as session:
            rows = _all_rows(session)
            if not rows or _head_text(session) is not None \
                    or any(r.mac is not None for r in rows):
                return 0
            previous = GENESIS
            for row in rows:
                row.mac = previous = entry_mac(key, previous, row)
                session.add(row)
            assert rows[-1].id is not None
            _put_head(session, LedgerHead(len(rows), rows[-1].id, previous), key)
            session.add(self._event_row(SiteEvent.LEDGER_SEALED, plan_hash=None,
                                        details={"entries": len(rows)}))
            return len(rows)

    def _require_key(self) -> LedgerKey:
        if self._ledger_key is None:
            raise TesseraError(ErrorCode.KEY_MISSING,
                               "ledger: the privacy ledger is authenticated; open the store "
                               "with the site's ledger key (from its vault) to record or "
                               "verify it")
        return self._ledger_key


def _put_head(session: Session, head: LedgerHead, key: LedgerKey) -> None:
    row = session.get(SettingRow, HEAD_KEY)
    text = head.to_setting(key)
    row = SettingRow(key=HEAD_KEY, value=text) if row is None else row
    row.value = text
    session.add(row)

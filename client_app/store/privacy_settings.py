"""The site's privacy settings: its ceiling, its delta and whether it runs non-private studies.

Three rows of the ``settings`` table, each change a site event in the same transaction:

- the **ceiling** (epsilon per dataset, :data:`~common.settings.DEFAULT_CEILING` unless set);
- the **delta** every release of a dataset is accounted at. Unless the operator sets one
  value for the site, a dataset's delta is ``1 / (10 n)`` for the ``n`` rows of its current
  registered version, and never above the smallest delta its ledger entries already used
  (so re-registering fewer rows cannot shrink the epsilon already spent);
- **non-private studies** (``privacy.dp = false`` plans), refused unless allowed.

Loosening a setting (raising the ceiling or the delta, allowing non-private studies) needs
explicit confirmation; tightening never does. Mixed into
:class:`~client_app.store.site_store.SiteStore`.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlmodel import Session, col, select

from client_app.store.events import SiteEvent
from client_app.store.records import SiteDelta
from client_app.store.tables import DatasetVersionRow, EventRow, LedgerRow, SettingRow
from common.errors import ErrorCode, TesseraError
from common.settings import DEFAULT_CEILING

CEILING_KEY = "privacy_ceiling"
DELTA_KEY = "privacy_delta"
NON_PRIVATE_KEY = "allow_non_private"
#: Settings only these methods (never ``put_setting``) may change.
PROTECTED_KEYS = frozenset({CEILING_KEY, DELTA_KEY, NON_PRIVATE_KEY})
#: The default delta is 1 / (DELTA_ROWS_FACTOR x the dataset's rows).
DELTA_ROWS_FACTOR = 10


def ceiling_in(session: Session) -> float:
    """The ceiling as the transaction of ``session`` sees it."""
    row = session.get(SettingRow, CEILING_KEY)
    return float(row.value) if row is not None else DEFAULT_CEILING


def explicit_delta_in(session: Session) -> float | None:
    """The operator's site-wide delta, or None when each dataset takes its default."""
    row = session.get(SettingRow, DELTA_KEY)
    return None if row is None else float(row.value)


def delta_in(session: Session, dataset_id: str, *, rows: int | None = None) -> SiteDelta:
    """The delta ``dataset_id`` is accounted at, as the transaction of ``session`` sees it.

    ``rows`` sizes the default only for a dataset with no registered version (a legacy,
    unversioned file). CONFIG_INVALID when nothing sizes it and no entry was recorded yet.
    """
    explicit = explicit_delta_in(session)
    if explicit is not None:
        return SiteDelta(dataset_id, explicit, "explicit")
    registered = session.exec(
        select(DatasetVersionRow.rows).where(DatasetVersionRow.dataset == dataset_id)
        .order_by(col(DatasetVersionRow.id).desc()).limit(1)).first()
    n = registered if registered is not None else rows
    floor = session.exec(
        select(sa.func.min(LedgerRow.delta)).where(LedgerRow.dataset_id == dataset_id)).one()
    if n is None or n < 1:
        if floor is None:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"delta: dataset '{dataset_id}' has no registered version to size its default "
                "delta (1/(10 n)); register it, or set the site's delta "
                "(tessera site delta VALUE)")
        return SiteDelta(dataset_id, float(floor), "ledger")
    default = 1.0 / (DELTA_ROWS_FACTOR * n)
    if floor is not None and float(floor) < default:
        return SiteDelta(dataset_id, float(floor), "ledger", n)
    return SiteDelta(dataset_id, default, "rows", n)


def known_datasets(session: Session) -> list[str]:
    """Every dataset with a registered version or a ledger entry, by name."""
    names = set(session.exec(select(DatasetVersionRow.dataset)).all())
    names |= set(session.exec(select(LedgerRow.dataset_id)).all())
    return sorted(names)


def check_delta(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not 0 < value < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"delta: must be in (0, 1), got {value!r}")
    return float(value)


class PrivacySettings:
    """The ceiling, delta and non-private-study settings of a site store (a mixin)."""

    def _transaction(self, *, write: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError  # pragma: no cover - provided by SiteStore

    @staticmethod
    def _event_row(kind: str, *, plan_hash: str | None,
                   details: dict[str, object]) -> EventRow:
        raise NotImplementedError  # pragma: no cover - provided by SiteStore

    # -- ceiling -------------------------------------------------------------------------

    def ceiling(self) -> float:
        """The site's privacy ceiling (epsilon per dataset); ``DEFAULT_CEILING`` unless set."""
        with self._transaction() as session:
            return ceiling_in(session)

    def set_ceiling(self, value: float, *, actor: str, confirm_raise: bool = False) -> None:
        """Set the ceiling; lowering is always allowed, raising needs ``confirm_raise``."""
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value <= 0:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID, f"ceiling: must be a finite number > 0, got {value!r}"
            )
        _actor(actor)
        value = float(value)
        with self._transaction(write=True) as session:
            row = session.get(SettingRow, CEILING_KEY)
            current = ceiling_in(session)
            if row is not None and value == current:
                return
            if value > current and not confirm_raise:
                raise TesseraError(
                    ErrorCode.PERMISSION_DENIED,
                    f"raising the privacy ceiling from {current:g} to {value:g} "
                    "requires confirmation",
                )
            _put(session, CEILING_KEY, repr(value))
            session.add(self._event_row(SiteEvent.CEILING_CHANGED, plan_hash=None, details={
                "old": current, "new": value, "actor": actor,
            }))

    # -- delta ---------------------------------------------------------------------------

    def site_delta(self, dataset_id: str, *, rows: int | None = None) -> SiteDelta:
        """The delta every release on ``dataset_id`` is accounted at (see :func:`delta_in`)."""
        with self._transaction() as session:
            return delta_in(session, dataset_id, rows=rows)

    def explicit_delta(self) -> float | None:
        """The operator's site-wide delta, or None (each dataset's default applies)."""
        with self._transaction() as session:
            return explicit_delta_in(session)

    def set_delta(self, value: float | None, *, actor: str, confirm_raise: bool = False) -> None:
        """Set the site's delta (None: back to each dataset's default).

        Raising the delta of any known dataset needs ``confirm_raise``; lowering is free.
        """
        new = None if value is None else check_delta(value)
        _actor(actor)
        with self._transaction(write=True) as session:
            old = explicit_delta_in(session)
            if new == old:
                return
            names = known_datasets(session)
            before = {n: _delta_or_none(session, n) for n in names}
            _put(session, DELTA_KEY, None if new is None else repr(new))
            after = {n: _delta_or_none(session, n) for n in names}
            raised = sorted(n for n in names if _above(after[n], before[n]))
            if new is not None and old is not None and new > old:
                raised = raised or ["every dataset"]
            if raised and not confirm_raise:
                raise TesseraError(
                    ErrorCode.PERMISSION_DENIED,
                    f"raising the privacy delta of {', '.join(raised)} "
                    f"(to {'each default' if new is None else f'{new:g}'}) requires "
                    "confirmation")
            session.add(self._event_row(SiteEvent.DELTA_CHANGED, plan_hash=None, details={
                "old": "default" if old is None else old,
                "new": "default" if new is None else new, "actor": actor,
            }))

    # -- non-private studies -------------------------------------------------------------

    def allows_non_private(self) -> bool:
        """Whether this site runs studies whose plan turns differential privacy off."""
        with self._transaction() as session:
            row = session.get(SettingRow, NON_PRIVATE_KEY)
            return row is not None and row.value == "true"

    def set_allow_non_private(self, allowed: bool, *, actor: str,
                              confirm: bool = False) -> bool:
        """Allow (needs ``confirm``) or refuse non-private studies; False if unchanged."""
        if not isinstance(allowed, bool):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "allowed: must be true or false")
        _actor(actor)
        with self._transaction(write=True) as session:
            row = session.get(SettingRow, NON_PRIVATE_KEY)
            current = row is not None and row.value == "true"
            if current == allowed:
                return False
            if allowed and not confirm:
                raise TesseraError(ErrorCode.PERMISSION_DENIED,
                                   "allowing studies without differential privacy requires "
                                   "confirmation")
            _put(session, NON_PRIVATE_KEY, "true" if allowed else "false")
            session.add(self._event_row(SiteEvent.NON_PRIVATE_CHANGED, plan_hash=None,
                                        details={"allowed": allowed, "actor": actor}))
            return True


def _actor(actor: str) -> None:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 128:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "actor: must be a non-empty string of at most 128 characters")


def _put(session: Session, key: str, value: str | None) -> None:
    row = session.get(SettingRow, key)
    if value is None:
        if row is not None:
            session.delete(row)
        session.flush()
        return
    row = SettingRow(key=key, value=value) if row is None else row
    row.value = value
    session.add(row)
    session.flush()


def _delta_or_none(session: Session, dataset_id: str) -> float | None:
    try:
        return delta_in(session, dataset_id).value
    except TesseraError:
        return None


def _above(new: float | None, old: float | None) -> bool:
    return new is not None and (old is None or new > old)


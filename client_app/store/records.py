"""What the site store hands out: frozen records of its rows, and the budget verdict.

Rows (:mod:`client_app.store.tables`) stay inside the store's transactions; callers get
these records, whose timestamps are always timezone-aware (UTC) and whose ``to_json`` is
what the CLI and the desktop app show.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from client_app.store.tables import ApprovalRow, EventRow, LedgerRow
from common.errors import ErrorCode, TesseraError
from privacy.mechanisms import DpStep, Mechanism, mechanism_from_json


def _iso(at: datetime) -> str:
    return at.isoformat()


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class ApprovalRecord:
    """One decision about a plan hash."""

    id: int
    at: datetime
    plan_hash: str
    decision: str
    actor: str
    note: str

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": _iso(self.at)}


class ReleaseKind(StrEnum):
    """What a ledger entry released: a DP-SGD round, or a noisy statistic of some kind."""

    DP_SGD = "dp_sgd"
    STATISTICS = "statistics"
    EVALUATION_COUNTS = "evaluation_counts"
    IMPORTANCE = "importance"
    LOSO_COUNTS = "loso_counts"
    ROW_COUNTS = "row_counts"
    DRIFT = "drift"


@dataclass(frozen=True)
class LedgerRecord:
    """One release on a dataset: its mechanism and parameters, what it was for, its own
    epsilon and the dataset's cumulative epsilon (every entry so far, at ``delta``)."""

    id: int
    at: datetime
    kind: str
    mechanism: Mechanism
    plan_hash: str
    study: str
    run_id: str
    round: int
    dataset_id: str
    dataset_version: str
    delta: float
    epsilon: float
    epsilon_cumulative: float
    mac: str | None

    @property
    def mechanism_name(self) -> str:
        return self.mechanism.mechanism

    @property
    def parameters(self) -> dict[str, Any]:
        """The mechanism's parameters (its JSON form without the name)."""
        return {k: v for k, v in self.mechanism.to_json().items() if k != "mechanism"}

    def parameters_text(self) -> str:
        """The parameters in words, e.g. ``noise 1.1, rate 0.02, 50 steps``."""
        m = self.mechanism
        if isinstance(m, DpStep):
            return f"noise {m.noise_multiplier:.3g}, rate {m.sample_rate:.3g}, {m.steps} steps"
        return f"noise {m.noise_multiplier:.3g}, {m.count} release{'s' if m.count > 1 else ''}"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id, "at": _iso(self.at), "kind": self.kind,
            "mechanism": self.mechanism_name, "parameters": self.parameters,
            "plan_hash": self.plan_hash, "study": self.study, "run_id": self.run_id,
            "round": self.round, "dataset_id": self.dataset_id,
            "dataset_version": self.dataset_version, "delta": self.delta,
            "epsilon": self.epsilon, "epsilon_cumulative": self.epsilon_cumulative,
            "mac": self.mac,
        }


@dataclass(frozen=True)
class SiteDelta:
    """The delta a site accounts one dataset at, and where it comes from.

    ``source`` is ``"explicit"`` (the operator's setting), ``"rows"`` (1/(10 n) for the
    ``rows`` of the dataset's current version) or ``"ledger"`` (the smallest delta the
    dataset's entries already used, which the default never rises above).
    """

    dataset_id: str
    value: float
    source: str
    rows: int | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class EventRecord:
    """One site event (input to the audit trail); details never hold patient data."""

    id: int
    at: datetime
    kind: str
    plan_hash: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": _iso(self.at)}


@dataclass(frozen=True)
class BudgetCheck:
    """Whether more releases on a dataset fit under the site's ceiling.

    ``projected`` is the dataset's cumulative epsilon at the site's ``delta`` with the
    releases added; they are allowed when they do not go past the ceiling (reaching it
    exactly is allowed).
    """

    dataset_id: str
    projected: float
    ceiling: float
    delta: float

    @property
    def allowed(self) -> bool:
        return self.projected <= self.ceiling

    def refusal(self) -> TesseraError:
        """The BUDGET_EXCEEDED error naming the dataset, the projected and the ceiling."""
        return TesseraError(
            ErrorCode.BUDGET_EXCEEDED,
            f"dataset_id: releasing more on dataset '{self.dataset_id}' would raise its "
            f"cumulative epsilon to {self.projected:.3f} (at this site's delta "
            f"{self.delta:.3g}), above this site's ceiling {self.ceiling:.3f}",
        )


def approval_record(row: ApprovalRow) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id or 0, at=_utc(row.at), plan_hash=row.plan_hash, decision=row.decision,
        actor=row.actor, note=row.note,
    )


def ledger_record(row: LedgerRow) -> LedgerRecord:
    try:
        parameters = json.loads(row.parameters)
        mechanism = mechanism_from_json({"mechanism": row.mechanism, **parameters})
    except (ValueError, TypeError, TesseraError) as exc:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"ledger: entry {row.id} holds no valid mechanism") from exc
    return LedgerRecord(
        id=row.id or 0, at=_utc(row.at), kind=row.kind, mechanism=mechanism,
        plan_hash=row.plan_hash, study=row.study, run_id=row.run_id, round=row.round,
        dataset_id=row.dataset_id, dataset_version=row.dataset_version, delta=row.delta,
        epsilon=row.epsilon, epsilon_cumulative=row.epsilon_cumulative, mac=row.mac,
    )


def event_record(row: EventRow) -> EventRecord:
    return EventRecord(
        id=row.id or 0, at=_utc(row.at), kind=row.kind, plan_hash=row.plan_hash,
        details=json.loads(row.details),
    )

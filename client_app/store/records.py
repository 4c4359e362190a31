"""What the site store hands out: frozen records of its rows, and the budget verdict.

Rows (:mod:`client_app.store.tables`) stay inside the store's transactions; callers get
these records, whose timestamps are always timezone-aware (UTC) and whose ``to_json`` is
what the CLI and the desktop app show.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from client_app.store.tables import ApprovalRow, EventRow, LedgerRow
from common.errors import ErrorCode, TesseraError
from privacy.accounting import DpStep


def _iso(at: datetime) -> str:
    return at.isoformat()


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


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


@dataclass(frozen=True)
class LedgerRecord:
    """One DP-SGD run: its parameters, its own epsilon and the dataset's cumulative epsilon."""

    id: int
    at: datetime
    plan_hash: str
    study: str
    round: int
    dataset_id: str
    dataset_version: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon: float
    epsilon_cumulative: float

    @property
    def step(self) -> DpStep:
        """The run as an accounting step."""
        return DpStep(
            noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=self.steps
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": _iso(self.at)}


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
    """Whether more DP-SGD runs on a dataset fit under the site's ceiling.

    ``projected`` is the dataset's cumulative epsilon with the runs added; a run is allowed
    when it does not go past the ceiling (reaching it exactly is allowed).
    """

    dataset_id: str
    projected: float
    ceiling: float

    @property
    def allowed(self) -> bool:
        return self.projected <= self.ceiling

    def refusal(self) -> TesseraError:
        """The BUDGET_EXCEEDED error naming the dataset, the projected and the ceiling."""
        return TesseraError(
            ErrorCode.BUDGET_EXCEEDED,
            f"dataset_id: training on dataset '{self.dataset_id}' would raise its cumulative "
            f"epsilon to {self.projected:.3f}, above this site's ceiling {self.ceiling:.3f}",
        )


def approval_record(row: ApprovalRow) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id or 0, at=_utc(row.at), plan_hash=row.plan_hash, decision=row.decision,
        actor=row.actor, note=row.note,
    )


def ledger_record(row: LedgerRow) -> LedgerRecord:
    return LedgerRecord(
        id=row.id or 0, at=_utc(row.at), plan_hash=row.plan_hash, study=row.study,
        round=row.round, dataset_id=row.dataset_id, dataset_version=row.dataset_version,
        noise_multiplier=row.noise_multiplier, sample_rate=row.sample_rate, steps=row.steps,
        delta=row.delta, epsilon=row.epsilon, epsilon_cumulative=row.epsilon_cumulative,
    )


def event_record(row: EventRow) -> EventRecord:
    return EventRecord(
        id=row.id or 0, at=_utc(row.at), kind=row.kind, plan_hash=row.plan_hash,
        details=json.loads(row.details),
    )

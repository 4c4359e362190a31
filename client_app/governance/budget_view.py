"""The privacy budget as an operator reads it: spent and remaining stated both ways, each
ledger entry explained (round, mechanism, epsilon added to the dataset's total).

:func:`budget_lines` says, per dataset, "spent 3.000 of the ceiling 10 (30% used); 7.000
left (70% left)", never a bare percentage that could be read either way. :func:`ledger_rows`
turns ledger entries into rows whose ``added`` is how much the dataset's cumulative epsilon
grew with the entry (composition is tighter than a sum, so it is not the entry's own
epsilon, which the row keeps as ``alone``). Any kind of release and any mechanism is shown by
its name, so new kinds of entries never break the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from client_app.governance.budget import DatasetBudget
from client_app.governance.narration import mechanism_text, release_sentence, release_text
from client_app.governance.sharing import Sharing
from client_app.store.records import LedgerRecord

#: The share of the ceiling past which a dataset's budget needs the operator's attention.
ATTENTION_FRACTION = 0.8


@dataclass(frozen=True)
class LedgerRow:
    """One ledger entry as the budget page shows it."""

    at: datetime
    dataset: str
    study: str
    plan_hash: str
    round: int
    release: str
    mechanism: str
    parameters: str
    delta: float
    added: float
    alone: float
    cumulative: float
    explanation: str


@dataclass(frozen=True)
class Gauge:
    """One dataset's spend against the ceiling."""

    dataset: str
    spent: float
    ceiling: float
    remaining: float
    releases: int
    delta: float | None

    @property
    def fraction(self) -> float:
        """Spent over the ceiling (may exceed 1 after the ceiling was lowered)."""
        return self.spent / self.ceiling if self.ceiling > 0 else 1.0

    @property
    def needs_attention(self) -> bool:
        return self.fraction >= ATTENTION_FRACTION

    def text(self) -> str:
        """Spent and remaining, both with their share, so neither can be misread."""
        used = min(self.fraction, 9.99)
        return (f"spent epsilon {self.spent:.3f} of the ceiling {self.ceiling:g} "
                f"({used:.0%} used); {self.remaining:.3f} left ({max(1 - used, 0):.0%} left)")


def gauges(budgets: Sequence[DatasetBudget]) -> list[Gauge]:
    return [Gauge(dataset=b.dataset, spent=b.spent, ceiling=b.ceiling, remaining=b.remaining,
                  releases=len(b.entries), delta=None if b.delta is None else b.delta.value)
            for b in budgets]


def budget_lines(budgets: Sequence[DatasetBudget]) -> list[str]:
    """One line per dataset: what was spent and what is left, at which delta."""
    lines = []
    for gauge in gauges(budgets):
        delta = "not set yet" if gauge.delta is None else f"{gauge.delta:.3g}"
        lines.append(f"{gauge.dataset}: {gauge.text()}, in "
                     f"{gauge.releases} release(s) at delta {delta}")
    return lines


def _parameters(entry: LedgerRecord) -> str:
    """The mechanism's parameters in words; any mechanism, known or not."""
    try:
        return entry.parameters_text()
    except (AttributeError, TypeError, ValueError):
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(entry.parameters.items())
                         if isinstance(v, (int, float, str)))


def ledger_rows(budgets: Sequence[DatasetBudget]) -> list[LedgerRow]:
    """Every entry of ``budgets``, oldest first per dataset, each explained."""
    rows: list[LedgerRow] = []
    for budget in budgets:
        previous = 0.0
        for entry in budget.entries:
            added = max(entry.epsilon_cumulative - previous, 0.0)
            previous = entry.epsilon_cumulative
            mechanism = entry.mechanism_name
            rows.append(LedgerRow(
                at=entry.at, dataset=entry.dataset_id, study=entry.study,
                plan_hash=entry.plan_hash, round=entry.round, release=release_text(entry.kind),
                mechanism=mechanism_text(mechanism), parameters=_parameters(entry),
                delta=entry.delta, added=added, alone=entry.epsilon,
                cumulative=entry.epsilon_cumulative,
                explanation=release_sentence(
                    kind=entry.kind, mechanism=mechanism, round_=entry.round,
                    study=entry.study, dataset=entry.dataset_id, added=added,
                    alone=entry.epsilon, cumulative=entry.epsilon_cumulative)))
    return rows


@dataclass(frozen=True)
class BudgetSnapshot:
    """Everything the budget page shows, read in one go."""

    ceiling: float
    gauges: tuple[Gauge, ...]
    lines: tuple[str, ...]
    rows: tuple[LedgerRow, ...]
    curves: tuple[tuple[str, tuple[tuple[datetime, float], ...]], ...]
    sharing: Sharing


def snapshot(budgets: Sequence[DatasetBudget], *, ceiling: float,
             shared: Sharing) -> BudgetSnapshot:
    return BudgetSnapshot(ceiling=ceiling, gauges=tuple(gauges(budgets)),
                          lines=tuple(budget_lines(budgets)), rows=tuple(ledger_rows(budgets)),
                          curves=tuple((b.dataset, b.curve) for b in budgets), sharing=shared)

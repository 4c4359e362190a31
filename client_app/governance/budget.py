"""The privacy-budget view of a site: per dataset, its ledger, spend, ceiling and curve.

Read-only over the site store's ledger (every DP-SGD run, with the dataset's cumulative
epsilon composed over its whole history) plus the one write an operator may make: the
ceiling, which can always be lowered but is raised only with explicit confirmation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from client_app.store.folder import SiteDir
from client_app.store.site_store import LedgerRecord, SiteStore
from client_app.store.tables import DatasetVersionRow


@dataclass(frozen=True)
class DatasetBudget:
    """One dataset's privacy spend against the site's ceiling."""

    dataset: str
    entries: tuple[LedgerRecord, ...]
    spent: float
    ceiling: float
    remaining: float
    curve: tuple[tuple[datetime, float], ...]

    @property
    def fraction_spent(self) -> float:
        """Spent over ceiling (may exceed 1 after the ceiling was lowered)."""
        return self.spent / self.ceiling

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.dataset, "spent": self.spent, "ceiling": self.ceiling,
            "remaining": self.remaining, "entries": [e.to_json() for e in self.entries],
            "curve": [[at.isoformat(), eps] for at, eps in self.curve],
        }


def budget_overview(site: SiteDir) -> list[DatasetBudget]:
    """Every dataset with ledger entries or a registered version, by name."""
    with SiteStore.open(site) as store:
        ceiling = store.ceiling()
        entries = store.ledger()
        with store.transaction() as session:
            registered = set(session.exec(select(DatasetVersionRow.dataset)).all())
    by_dataset: dict[str, list[LedgerRecord]] = defaultdict(list)
    for entry in entries:
        by_dataset[entry.dataset_id].append(entry)
    out = []
    for name in sorted(registered | by_dataset.keys()):
        runs = tuple(by_dataset.get(name, ()))
        spent = runs[-1].epsilon_cumulative if runs else 0.0
        out.append(DatasetBudget(
            dataset=name, entries=runs, spent=spent, ceiling=ceiling,
            remaining=max(ceiling - spent, 0.0),
            curve=tuple((e.at, e.epsilon_cumulative) for e in runs),
        ))
    return out


def ceiling(site: SiteDir) -> float:
    """The site's privacy ceiling (epsilon per dataset)."""
    with SiteStore.open(site) as store:
        return store.ceiling()


def set_ceiling(site: SiteDir, value: float, *, actor: str, confirm_raise: bool = False) -> None:
    """Change the ceiling; raising it without ``confirm_raise`` is PERMISSION_DENIED."""
    with SiteStore.open(site) as store:
        store.set_ceiling(value, actor=actor, confirm_raise=confirm_raise)

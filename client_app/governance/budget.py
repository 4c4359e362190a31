"""The privacy-budget view of a site and the privacy terms it admits a study on.

Per dataset: its ledger (every release, each with its mechanism), the delta the site
accounts it at, its cumulative epsilon at that delta against the site's ceiling, and the
spending curve. :func:`ledger_report` is the document ``tessera site budget --json`` prints
(docs/privacy-ledger.md gives its schema and a script that recomputes every epsilon in it
with an independent accountant). :func:`check_plan_privacy` is what approval and admission
ask of a plan: its ``privacy.delta`` is not above the site's delta, and it keeps
differential privacy on unless the site runs non-private studies.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from client_app.custody.site_secrets import ledger_key
from client_app.custody.vault import SiteVault
from client_app.datasets.versions import current_version, read_current
from client_app.governance.ledger import check_ledger, require_intact_ledger
from client_app.store.folder import SiteDir
from client_app.store.ledger_chain import LedgerCheck
from client_app.store.site_store import LedgerRecord, SiteDelta, SiteStore
from client_app.store.tables import DatasetVersionRow
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan
from privacy.ledger_epsilon import ledger_epsilon as epsilon_for_history

#: What ``tessera site budget --json`` prints (see docs/privacy-ledger.md).
REPORT_FORMAT = "tessera-privacy-ledger"
REPORT_VERSION = 1


@dataclass(frozen=True)
class DatasetBudget:
    """One dataset's privacy spend against the site's ceiling, at the site's delta."""

    dataset: str
    entries: tuple[LedgerRecord, ...]
    spent: float
    ceiling: float
    remaining: float
    curve: tuple[tuple[datetime, float], ...]
    #: The delta the dataset is accounted at (None if nothing sizes it yet).
    delta: SiteDelta | None = None

    @property
    def fraction_spent(self) -> float:
        """Spent over ceiling (may exceed 1 after the ceiling was lowered)."""
        return self.spent / self.ceiling

    def to_json(self) -> dict[str, object]:
        delta = self.delta
        return {
            "dataset": self.dataset, "delta": None if delta is None else delta.value,
            "delta_source": None if delta is None else delta.source,
            "rows": None if delta is None else delta.rows, "epsilon": self.spent,
            "ceiling": self.ceiling, "remaining": self.remaining,
            "entries": [e.id for e in self.entries],
            "curve": [[at.isoformat(), eps] for at, eps in self.curve],
        }


def _delta_or_none(store: SiteStore, dataset: str) -> SiteDelta | None:
    try:
        return store.site_delta(dataset)
    except TesseraError as err:
        if err.code is ErrorCode.CONFIG_INVALID:
            return None
        raise


def _budgets(store: SiteStore, dataset: str | None = None) -> list[DatasetBudget]:
    ceiling = store.ceiling()
    entries = store.ledger(dataset_id=dataset)
    with store.transaction() as session:
        registered = set(session.exec(select(DatasetVersionRow.dataset)).all())
    by_dataset: dict[str, list[LedgerRecord]] = defaultdict(list)
    for entry in entries:
        by_dataset[entry.dataset_id].append(entry)
    names = {dataset} & (registered | by_dataset.keys()) if dataset is not None \
        else registered | by_dataset.keys()

    out = []
    for name in sorted(names):
        runs = tuple(by_dataset.get(name, ()))
        delta = _delta_or_none(store, name)
        spent = epsilon_for_history([e.mechanism for e in runs], delta=delta.value) \
            if runs and delta is not None else 0.0
        out.append(DatasetBudget(
            dataset=name, entries=runs, spent=spent, ceiling=ceiling,
            remaining=max(ceiling - spent, 0.0),
            curve=tuple((e.at, e.epsilon_cumulative) for e in runs), delta=delta,
        ))
    return out


def budget_overview(site: SiteDir) -> list[DatasetBudget]:
    """Every dataset with ledger entries or a registered version, by name."""
    with SiteStore.open(site) as store:
        return _budgets(store)


@dataclass(frozen=True)
class LedgerReport:
    """Everything ``tessera site budget`` shows: settings, integrity, datasets, entries.

    ``integrity`` is None when the ledger could not be checked (no vault: the check needs
    the key derived from it); ``unchecked`` then says why.
    """

    site: str
    ceiling: float
    explicit_delta: float | None
    non_private_studies: bool
    integrity: LedgerCheck | None
    datasets: tuple[DatasetBudget, ...]
    entries: tuple[LedgerRecord, ...]
    unchecked: str = ""

    def to_json(self) -> dict[str, object]:
        integrity: dict[str, object] = (
            {"checked": False, "ok": None, "reason": self.unchecked}
            if self.integrity is None else {"checked": True, **self.integrity.to_json()})
        return {
            "format": REPORT_FORMAT, "version": REPORT_VERSION, "site": self.site,
            "ceiling": self.ceiling, "explicit_delta": self.explicit_delta,
            "non_private_studies": self.non_private_studies, "integrity": integrity,
            "datasets": [d.to_json() for d in self.datasets],
            "entries": [e.to_json() for e in self.entries],
        }


def ledger_report(site: SiteDir, *, vault: SiteVault | None, dataset: str | None = None,
                  unchecked: str = "") -> LedgerReport:
    """The ledger, with its integrity checked under the vault's key (sealing entries made
    before the ledger was authenticated); without a vault it is shown unchecked."""
    key = None if vault is None else ledger_key(vault)
    with SiteStore.open(site, ledger_key=key) as store:
        integrity = None if vault is None else check_ledger(vault, store)
        return LedgerReport(
            site=site.name, ceiling=store.ceiling(), explicit_delta=store.explicit_delta(),
            non_private_studies=store.allows_non_private(), integrity=integrity,
            datasets=tuple(_budgets(store, dataset)),
            entries=tuple(store.ledger(dataset_id=dataset)),
            unchecked=unchecked if vault is None else "",
        )


def ceiling(site: SiteDir) -> float:
    """The site's privacy ceiling (epsilon per dataset)."""
    with SiteStore.open(site) as store:
        return store.ceiling()


def set_ceiling(site: SiteDir, value: float, *, actor: str, confirm_raise: bool = False) -> None:
    """Change the ceiling; raising it without ``confirm_raise`` is PERMISSION_DENIED."""
    with SiteStore.open(site) as store:
        store.set_ceiling(value, actor=actor, confirm_raise=confirm_raise)


# -- the privacy terms a site admits a plan on ---------------------------------------------


def check_plan_privacy(store: SiteStore, plan: StudyPlan, *,
                       dataset_rows: int | None) -> SiteDelta | None:
    """Refuse a plan whose privacy terms this site does not accept; the delta it checked.

    PERMISSION_DENIED when the plan turns differential privacy off and the site does not
    run non-private studies, or when ``privacy.delta`` is above the site's delta for the
    plan's dataset (``dataset_rows`` sizes the default delta of a dataset with no
    registered version). A dataset nothing sizes yet is not checked here: nothing can be
    recorded on it either (the ledger refuses it).
    """
    name = plan.dataset.name
    if not plan.privacy.dp:
        if not store.allows_non_private():
            raise TesseraError(
                ErrorCode.PERMISSION_DENIED,
                f"privacy.dp: study '{plan.name}' turns differential privacy off, and this "
                "site does not run non-private studies (an operator may allow them: "
                "tessera site non-private allow --yes)")
        return None
    try:
        delta = store.site_delta(name, rows=dataset_rows)
    except TesseraError as err:
        if err.code is ErrorCode.CONFIG_INVALID:
            return None
        raise
    if plan.privacy.delta > delta.value:
        origin = ("set by this site's operator" if delta.source == "explicit" else
                  f"1/(10 n) for the {delta.rows} rows of dataset '{name}'"
                  if delta.source == "rows" else
                  f"the smallest delta dataset '{name}' was already accounted at")
        raise TesseraError(
            ErrorCode.PERMISSION_DENIED,
            f"privacy.delta: study '{plan.name}' asks for delta {plan.privacy.delta:g}, above "
            f"this site's delta {delta.value:.3g} ({origin}); this site accounts every "
            "release at its own delta")
    return delta


def dataset_rows(vault: SiteVault, dataset: str) -> int | None:
    """Rows of the dataset's current version (legacy files counted), None without one."""
    current = current_version(vault.site, dataset)
    if current is not None:
        return current.rows
    try:
        return read_current(vault, dataset)[1].rows
    except TesseraError as err:
        if err.code in (ErrorCode.NOT_FOUND, ErrorCode.CONFIG_INVALID):
            return None
        raise


def admit_privacy(vault: SiteVault, store: SiteStore, plan: StudyPlan) -> None:
    """What the agent requires before any task of ``plan``: an intact ledger (DATA_INVALID
    naming the first bad entry otherwise) and privacy terms this site accepts."""
    require_intact_ledger(vault, store)
    check_plan_privacy(store, plan, dataset_rows=dataset_rows(vault, plan.dataset.name))

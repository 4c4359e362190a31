"""Spending a site's privacy budget from a task: the ceiling check before a release and the
ledger entry that records it, the same for every kind of release.

A release is checked (:func:`check_budget`) before any noisy value is computed and recorded
(:func:`spend`) before it leaves the site; the store checks the ceiling again in the
transaction that records it, so two tasks racing for the last of a budget cannot both pass,
and a refusal there is recorded and reported as :func:`check_budget` reports one.
"""

from __future__ import annotations

from client_app.agent.context import TaskContext
from client_app.store.events import SiteEvent
from client_app.store.records import LedgerRecord, ReleaseKind
from common.errors import ErrorCode, TesseraError
from privacy.accounting import epsilon_for_history
from privacy.mechanisms import Mechanism


def check_budget(ctx: TaskContext, *mechanisms: Mechanism, what: str) -> None:
    """BUDGET_EXCEEDED (and a recorded refusal) unless ``mechanisms`` fit under the ceiling."""
    split, store = ctx.split, ctx.store
    check = store.check_release(split.dataset_id, list(mechanisms))
    if not check.allowed:
        store.record_event(SiteEvent.BUDGET_REFUSAL, plan_hash=ctx.plan_hash,
                           details={"round": ctx.round, "projected": check.projected,
                                    "ceiling": check.ceiling, "delta": check.delta})
        raise TesseraError(
            ErrorCode.BUDGET_EXCEEDED,
            f"{what} would raise cumulative epsilon for dataset "
            f"'{split.dataset_id}' to {check.projected:.3f} (at this site's delta "
            f"{check.delta:.3g}), above this site's ceiling {check.ceiling:.3f}")


def spend(ctx: TaskContext, mechanism: Mechanism, *, kind: ReleaseKind,
          what: str) -> LedgerRecord:
    """Check and record one release of this task's dataset in the ledger.

    The store checks the ceiling in the transaction that records the release; when it
    refuses, :func:`check_budget` records the refusal and says what was refused (one ledger
    read and composition fewer than asking first on every release)."""
    split = ctx.split
    try:
        return ctx.store.record_release(
            mechanism=mechanism, kind=kind, plan_hash=ctx.plan_hash, study=ctx.plan.name,
            run_id=ctx.run_id, round=ctx.round, dataset_id=split.dataset_id,
            dataset_version=split.dataset_version)
    except TesseraError as err:
        if err.code is ErrorCode.BUDGET_EXCEEDED:
            check_budget(ctx, mechanism, what=what)  # the refusal event and its message
        raise


def epsilon_metrics(ctx: TaskContext, entry: LedgerRecord) -> dict[str, float]:
    """The reply's privacy figures after ``entry``: its own epsilon, the dataset's cumulative
    epsilon and this study's, all at the site's delta (what the coordinator reports)."""
    study = [e.mechanism for e in ctx.store.ledger(dataset_id=entry.dataset_id)
             if e.plan_hash == ctx.plan_hash]
    return {"epsilon": entry.epsilon, "epsilon_cumulative": entry.epsilon_cumulative,
            "epsilon_study": epsilon_for_history(study, delta=entry.delta)}

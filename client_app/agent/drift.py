"""The drift task: per-feature histograms of this site's newest dataset version, shared with
the coordinator only when the plan declares ``[drift]`` and the operator allowed it.

The site setting of :mod:`client_app.governance.drift_sharing` is off until the operator
switches it on (``tessera site drift --sharing on``); a plan without ``[drift]`` or a site
that does not share is refused at admission, before anything is read or spent. Under DP the
answer is the Gaussian release of :mod:`privacy.dp_drift` (all consented rows of the newest
version, both splits), checked against the ceiling and recorded in the ledger before it is computed.

**Asking twice.** The first answer for a plan and dataset version is kept in the site's
outbox; a later request for the same plan and version gets that same answer again, and
nothing more is spent (repeating a released value is post-processing). A new dataset version
is a new release. If the kept answer is lost, the next request spends again, recorded as
another ledger entry (the accounting never under-counts).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from client_app.agent.context import TaskContext
from client_app.agent.spending import epsilon_metrics, spend
from client_app.governance.drift_sharing import drift_shared
from client_app.store.events import SiteEvent
from client_app.store.records import ReleaseKind
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.plan import StudyPlan
from privacy.dp_drift import histograms, noisy_histograms, watched_features
from privacy.release_plan import drift_mechanism
from protos.tessera.v1 import agent_pb2
from protos.wire import DRIFT_PREFIX

#: Reply metric: 1 when the answer repeats one already released for this version.
DRIFT_REPEATED = "drift_repeated"


def check_drift(plan: StudyPlan, store: SiteStore, *, round_: int) -> None:
    """Admission of a drift task: the plan declares it and the site shares it."""
    if plan.drift is None:
        raise TesseraError(ErrorCode.OUT_OF_SCHEDULE, "the plan declares no [drift] release")
    if round_ != 0:
        raise TesseraError(ErrorCode.OUT_OF_SCHEDULE, "a drift request belongs to round 0")
    if not drift_shared(store):
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "this site does not share drift statistics with the coordinator")


def _kept_path(ctx: TaskContext, version: str) -> Path:
    return ctx.vault.site.outbox_for(ctx.plan_hash) / f"drift-{version[:32]}.json"


def _kept(ctx: TaskContext, version: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The answer already released for this plan and version (with its ledger entry)."""
    spent = any(e.kind == ReleaseKind.DRIFT and e.plan_hash == ctx.plan_hash
                and e.dataset_version == version
                for e in ctx.store.ledger(dataset_id=ctx.split.dataset_id))
    path = _kept_path(ctx, version)
    if (ctx.plan.privacy.dp and not spent) or not path.is_file():
        return None
    try:
        cells = np.asarray(json.loads(path.read_text(encoding="utf-8"))["cells"],
                           dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cells if cells.shape == shape else None


def drift(ctx: TaskContext) -> agent_pb2.TaskReply:
    """This site's drift histograms of its newest dataset version (once per version)."""
    split, plan = ctx.split, ctx.plan
    watched = watched_features(plan)
    bins = watched.bins
    shape = (bins.features, bins.bins)
    cells = _kept(ctx, split.dataset_version, shape)
    metrics: dict[str, float] = {DRIFT_REPEATED: 0.0 if cells is None else 1.0}
    if cells is None:
        X = np.concatenate([split.train.X, split.test.X])[:, list(watched.columns)]
        mechanism = drift_mechanism(plan)
        if mechanism is None:  # a non-private comparison study the site allowed
            cells = histograms(X, bins)
        else:
            entry = spend(ctx, mechanism, kind=ReleaseKind.DRIFT,
                          what="the drift histograms")
            metrics.update(epsilon_metrics(ctx, entry))
            cells = noisy_histograms(X, bins, noise_multiplier=mechanism.noise_multiplier)
        atomic_write_bytes(_kept_path(ctx, split.dataset_version), json.dumps(
            {"plan_hash": ctx.plan_hash, "cells": cells.tolist()}).encode("utf-8"))
    for feature in range(bins.features):
        for b in range(bins.bins):
            metrics[f"{DRIFT_PREFIX}{feature}:{b}"] = float(cells[feature, b])
    ctx.store.record_event(SiteEvent.DRIFT_SHARED, plan_hash=ctx.plan_hash, details={
        "run_id": ctx.run_id, "repeated": bool(metrics[DRIFT_REPEATED])})
    return agent_pb2.TaskReply(ok=True, dataset_version=split.public_version, metrics=metrics)

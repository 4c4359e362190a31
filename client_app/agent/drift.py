"""The drift task: per-feature histograms of this site's newest dataset version, shared with
the coordinator only when the plan declares ``[drift]`` and the operator allowed it.

The site setting of :mod:`client_app.governance.drift_sharing` is off until the operator
switches it on (``tessera site drift --sharing on``); a plan without ``[drift]`` or a site
that does not share is refused at admission, before anything is read or spent. Under DP the
answer is the Gaussian release of :mod:`privacy.dp_drift` (all consented rows of the newest
version, both splits), checked against the ceiling and recorded in the ledger before it is
computed. With ``[drift] scores = true`` and the study's final model kept at this site (it
decrypted it itself at the final evaluation), the release has one more histogram, the
model's scores on the same rows, and its ledger entry counts it (``count`` = histograms).

**Asking twice.** The first answer for a plan and dataset version is kept in the site's
outbox with a digest of the rows it was computed on; a later request for the same plan and
version gets that same answer again, and nothing more is spent (repeating a released value is
post-processing), **as long as those rows are still the rows consent allows**. After a
withdrawal (or a renewed consent) the kept answer is never sent again: the site computes a
fresh answer without the withdrawn rows, which is a new release and spends again (refused,
as any release, when the ceiling does not allow it). A new dataset version is a new release.
If the kept answer is lost, the next request spends again, recorded as another ledger entry
(the accounting never under-counts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from client_app.agent.context import TaskContext
from client_app.agent.spending import epsilon_metrics, spend
from client_app.governance.drift_sharing import drift_shared
from client_app.learning.site_data import SiteSplit
from client_app.store.events import SiteEvent
from client_app.store.records import LedgerRecord, ReleaseKind
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.plan import StudyPlan
from privacy.dp_drift import (
    SCORES_METRIC,
    drift_mechanism,
    histograms,
    noisy_histograms,
    watched_features,
)
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


def rows_digest(split: SiteSplit) -> str:
    """A digest of the patients an answer covers (both splits, after consent)."""
    ids = sorted(str(i) for i in np.concatenate([split.train.patient_ids,
                                                 split.test.patient_ids]))
    digest = hashlib.sha256(b"tessera drift rows\0")
    for patient in ids:
        digest.update(patient.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _kept(ctx: TaskContext, version: str, rows: str,
          shapes: tuple[tuple[int, int], ...]) -> np.ndarray | None:
    """The answer already released for this plan and version (with its ledger entry) on the
    same rows; None when there is none or consent changed the rows since."""
    spent = any(e.kind == ReleaseKind.DRIFT and e.plan_hash == ctx.plan_hash
                and e.dataset_version == version
                for e in ctx.store.ledger(dataset_id=ctx.split.dataset_id))
    path = _kept_path(ctx, version)
    if (ctx.plan.privacy.dp and not spent) or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        cells = np.asarray(doc["cells"], dtype=np.int64)
        kept_rows = doc.get("rows")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if kept_rows != rows:  # a withdrawal since (or an answer from before rows were kept)
        return None
    return cells if cells.shape in shapes else None


def _fresh(ctx: TaskContext, X: np.ndarray) -> tuple[np.ndarray, LedgerRecord | None]:
    """A new release of ``X``'s columns (features, then scores if present) on the plan's
    bins; under DP it is checked and recorded in the ledger first (its entry)."""
    plan = ctx.plan
    watched = watched_features(plan)
    bins = watched.release_bins(with_scores=X.shape[1] > watched.bins.features)
    if not plan.privacy.dp:  # a non-private comparison study the site allowed
        return histograms(X, bins), None
    assert plan.drift is not None
    mechanism = drift_mechanism(noise_multiplier=plan.drift.noise_multiplier,
                                features=bins.features)
    entry = spend(ctx, mechanism, kind=ReleaseKind.DRIFT, what="the drift histograms")
    return noisy_histograms(X, bins, noise_multiplier=mechanism.noise_multiplier), entry


def _release_rows(ctx: TaskContext) -> np.ndarray:
    """The rows of a fresh release: watched features, then the kept model's scores when the
    plan asks for them and the site holds the model."""
    split, plan = ctx.split, ctx.plan
    watched = watched_features(plan)
    X = np.concatenate([split.train.X, split.test.X])
    columns = X[:, list(watched.columns)]
    if not watched.scores:
        return columns
    from client_app.learning.drift import kept_model_scores  # torch: only when asked

    scores = kept_model_scores(ctx.vault, plan, plan_hash=ctx.plan_hash, X=X)
    return columns if scores is None else np.column_stack([columns, scores])


def drift(ctx: TaskContext) -> agent_pb2.TaskReply:
    """This site's drift histograms of its newest dataset version (once per version and
    consented rows)."""
    split = ctx.split
    watched = watched_features(ctx.plan)
    features, bins = watched.bins.features, watched.bins.bins
    shapes = ((features, bins), (features + 1, bins)) if watched.scores else ((features, bins),)
    rows = rows_digest(split)
    cells = _kept(ctx, split.dataset_version, rows, shapes)
    metrics: dict[str, float] = {DRIFT_REPEATED: 0.0 if cells is None else 1.0}
    if cells is None:
        cells, entry = _fresh(ctx, _release_rows(ctx))
        if entry is not None:
            metrics.update(epsilon_metrics(ctx, entry))
        atomic_write_bytes(_kept_path(ctx, split.dataset_version), json.dumps(
            {"plan_hash": ctx.plan_hash, "rows": rows, "cells": cells.tolist()}
        ).encode("utf-8"))
    metrics[SCORES_METRIC] = float(cells.shape[0] > features)
    for row in range(cells.shape[0]):
        for b in range(bins):
            metrics[f"{DRIFT_PREFIX}{row}:{b}"] = float(cells[row, b])
    ctx.store.record_event(SiteEvent.DRIFT_SHARED, plan_hash=ctx.plan_hash, details={
        "run_id": ctx.run_id, "repeated": bool(metrics[DRIFT_REPEATED]),
        "scores": bool(metrics[SCORES_METRIC])})
    return agent_pb2.TaskReply(ok=True, dataset_version=split.public_version, metrics=metrics)

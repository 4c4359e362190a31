"""Federated permutation importance: ask each site, check the replies, average by row count.

After the final model is released, :func:`federated_importance` sends every admitted site an
``importance`` task carrying the final round's contributions and the federation statistics.
Each site shuffles one feature at a time on its held-out rows and replies with the mean AUC drop and
log-loss rise per feature and its held-out row count (``client_app.learning.importance``).
:func:`aggregate_importance` (pure) weights each site's means by its row count:

``auc_drop[f] = sum_s n_s * auc_drop_s[f] / sum_s n_s`` over the sites where AUC is defined,
and likewise ``log_loss_increase[f]`` over all answering sites. The result maps every feature
to ``{"auc_drop", "log_loss_increase", "n", "rank"}``, most important first (``rank`` 1 is
the largest AUC drop; it keeps the order where JSON is written with sorted keys, as in
``result.json`` and the registry). A site that fails or
sends a malformed reply is left out and named in the run record; importance never fails a
study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from protos.tessera.v1 import agent_pb2
from protos.wire import (
    IMPORTANCE_AUC_PREFIX,
    IMPORTANCE_EPSILON,
    IMPORTANCE_LOG_LOSS_PREFIX,
    IMPORTANCE_N,
    IMPORTANCE_REPEATS,
)
from server.collect import Refusal, collect
from server.study_run import StudyRun

AUC_KEY, LOG_LOSS_KEY = IMPORTANCE_AUC_PREFIX, IMPORTANCE_LOG_LOSS_PREFIX
N_KEY, REPEATS_KEY = IMPORTANCE_N, IMPORTANCE_REPEATS


@dataclass(frozen=True)
class SiteImportance:
    """One site's reply, validated: held-out rows and per-feature means (AUC may be absent)."""

    site: str
    n: int
    auc_drop: dict[str, float]
    log_loss_increase: dict[str, float]


def _bad(site: str, what: str) -> TesseraError:
    return TesseraError(ErrorCode.BAD_ENVELOPE, f"importance reply of {site}: {what}")


def parse_site_importance(site: str, metrics: Mapping[str, float],
                          features: Sequence[str]) -> SiteImportance:
    """Check a site's metrics map against the plan's features; raise naming what is wrong."""
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in metrics.values()):
        raise _bad(site, "a value is not a finite number")
    n = metrics.get(N_KEY)
    if n is None or n < 1 or n != int(n):
        raise _bad(site, f"'{N_KEY}' must be a positive whole number")
    known = {N_KEY, REPEATS_KEY, IMPORTANCE_EPSILON, *(AUC_KEY + f for f in features),
             *(LOG_LOSS_KEY + f for f in features)}
    if unknown := sorted(set(metrics) - known):
        raise _bad(site, f"unexpected key(s): {', '.join(unknown)}")
    missing = [f for f in features if LOG_LOSS_KEY + f not in metrics]
    if missing:
        raise _bad(site, f"no log-loss increase for: {', '.join(missing)}")
    auc = {f: float(metrics[AUC_KEY + f]) for f in features if AUC_KEY + f in metrics}
    if auc and len(auc) != len(features):
        raise _bad(site, "AUC drops for some features but not all")
    return SiteImportance(site=site, n=int(n), auc_drop=auc, log_loss_increase={
        f: float(metrics[LOG_LOSS_KEY + f]) for f in features})


def aggregate_importance(sites: Sequence[SiteImportance],
                         features: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Row-count-weighted means per feature, sorted by AUC drop, then log-loss rise.

    ``auc_drop`` is ``None`` when no site could measure AUC (a single class everywhere).
    Empty when no site answered.
    """
    if not sites:
        return {}
    total = sum(s.n for s in sites)
    with_auc = [s for s in sites if s.auc_drop]
    auc_total = sum(s.n for s in with_auc)
    out: dict[str, dict[str, Any]] = {}
    for f in features:
        out[f] = {
            "auc_drop": (sum(s.n * s.auc_drop[f] for s in with_auc) / auc_total
                         if with_auc else None),
            "log_loss_increase": sum(s.n * s.log_loss_increase[f] for s in sites) / total,
            "n": total,
        }

    def rank(item: tuple[str, dict[str, Any]]) -> tuple[float, float]:
        drop = item[1]["auc_drop"]
        return (-drop if drop is not None else math.inf, -item[1]["log_loss_increase"])

    ordered = sorted(out.items(), key=rank)
    return {name: {**values, "rank": i} for i, (name, values) in enumerate(ordered, start=1)}


def federated_importance(grid: Grid, run: StudyRun) -> dict[str, dict[str, Any]]:
    """Ask every admitted site for its importance on the verified final model; aggregate."""
    rounds = run.plan.training.rounds
    if not run.plan.evaluation_policy.importance:
        return {}
    requests = {node: run.request(site, agent_pb2.TASK_IMPORTANCE, rounds, model=rounds,
                                  stats=True)
                for node, site in sorted(run.evaluators.items())}
    replies, _ = run.send(grid, requests, names=run.evaluators)
    got = collect(replies, run.evaluators)
    features = run.plan.dataset.features
    accepted: list[SiteImportance] = []
    refused = got.refusals_json() + got.rejections_json()
    for site, reply in got.accepted:
        run.note_epsilon(site, reply.metrics)
        try:
            accepted.append(parse_site_importance(site, dict(reply.metrics), features))
        except TesseraError as err:
            refused.append(Refusal.of(site, err).to_json())
    run.recorder.event("importance_measured", sites=sorted(s.site for s in accepted),
                       rows=sum(s.n for s in accepted), refused=refused)
    return aggregate_importance(accepted, features)

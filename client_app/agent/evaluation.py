"""Evaluation tasks at a site, all on models it decrypted itself from verified sums:
held-out counts of a round's global model, opening the verified sum of the sites' encrypted
counts, own counts for leave-one-site-out, and permutation importance of the final model.

Whatever leaves the site is shaped for sharing first: histogram cells and groups smaller than
the site's minimum cell count are merged or suppressed, decrypted counts are rounded to whole
numbers and decrypted sums of real values are noise-flooded and rounded.
"""

from __future__ import annotations

import numpy as np

from client_app.agent.context import TaskContext
from client_app.agent.envelopes import counts_to_proto, seal_counts
from client_app.agent.signing import sign_envelope
from client_app.agent.training import MAX_CONTRIBUTORS
from client_app.governance.sharing import min_cell_count
from client_app.learning.importance import SiteImportance, permutation_importance
from client_app.learning.local_eval import keep_final_model
from client_app.learning.site_data import standardise
from client_app.store.events import SiteEvent
from common.errors import ErrorCode, TesseraError
from common.eval_counts import (
    HeldOutCounts,
    count_held_out,
    fixed_groups,
    from_vector,
    merge_small_cells,
    require_fixed_groups,
)
from common.metrics import DEFAULT_BINS
from common.models import predict_scores
from privacy.flooding import flood_and_round, flooding_sigma
from protos.tessera.v1 import agent_pb2
from protos.wire import (
    IMPORTANCE_AUC_PREFIX,
    IMPORTANCE_LOG_LOSS_PREFIX,
    IMPORTANCE_N,
    IMPORTANCE_REPEATS,
)


def _held_out_counts(ctx: TaskContext, *, round_: int, groups: tuple[str, ...] | None,
                     keep: bool) -> HeldOutCounts:
    split = ctx.split
    mean, std = ctx.standardisation()
    X = standardise(split.test.X, mean, std)
    model, _ = ctx.global_model(round_)
    if keep:  # the study's own verified final model, decrypted here
        keep_final_model(ctx.vault, ctx.plan, ctx.store, plan_hash=ctx.plan_hash,
                         round_=round_, model=model, mean=mean, std=std)
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    return count_held_out(scores, split.test.y, split.test.groups, groups=groups,
                          bins=DEFAULT_BINS)


def evaluate(ctx: TaskContext) -> agent_pb2.TaskReply:
    """Counts of the verified global model of this round on the held-out split: an
    encrypted, signed contribution when HE is on; merged plaintext counts otherwise."""
    if ctx.secret is None:
        counts = _held_out_counts(ctx, round_=ctx.round, groups=fixed_groups(ctx.plan),
                                  keep=True)
        shared = merge_small_cells(counts, min_cell=min_cell_count(ctx.store))
        ctx.store.record_event(SiteEvent.COUNTS_SENT, plan_hash=ctx.plan_hash,
                               details={"run_id": ctx.run_id, "round": ctx.round,
                                        "encrypted": False})
        return agent_pb2.TaskReply(ok=True, counts=counts_to_proto(shared))
    groups = require_fixed_groups(ctx.plan)
    counts = _held_out_counts(ctx, round_=ctx.round, groups=groups, keep=True)
    env = seal_counts(counts, groups, plan_hash=ctx.plan_hash, run_id=ctx.run_id,
                      round_=ctx.round, site=ctx.site, secret_context=ctx.secret,
                      params=ctx.params, contributors=MAX_CONTRIBUTORS)
    sign_envelope(env, ctx.identity.signing_key)
    ctx.store.record_event(SiteEvent.COUNTS_SENT, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "round": ctx.round,
                                    "encrypted": True, "digest": env.digest})
    return agent_pb2.TaskReply(ok=True, envelope=env)


def open_counts(ctx: TaskContext) -> agent_pb2.TaskReply:
    """The verified sum of the sites' encrypted counts, decrypted, rounded and merged."""
    if ctx.secret is None:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "evaluation counts are not encrypted in this study")
    groups = require_fixed_groups(ctx.plan)
    summed = ctx.open_counts(groups)
    counts = from_vector(summed.values, groups, bins=DEFAULT_BINS)  # whole numbers only
    if counts.n != summed.examples:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           "the summed counts cover another number of rows than was signed")
    sigma = flooding_sigma(ctx.params, contributors=len(summed.contributors), released=2)
    decimals = ctx.plan.release_policy.decimals
    sums = flood_and_round(np.array([counts.log_loss_sum, counts.brier_sum]), sigma=sigma,
                           decimals=decimals)
    released = HeldOutCounts(bins=counts.bins, histograms=counts.histograms,
                             log_loss_sum=float(sums[0]), brier_sum=float(sums[1]), n=counts.n)
    shared = merge_small_cells(released, min_cell=min_cell_count(ctx.store))
    ctx.store.record_event(SiteEvent.COUNTS_OPENED, plan_hash=ctx.plan_hash, details={
        "run_id": ctx.run_id, "round": ctx.round, "contributors": list(summed.contributors)})
    return agent_pb2.TaskReply(ok=True, counts=counts_to_proto(shared))


def evaluate_own(ctx: TaskContext) -> agent_pb2.TaskReply:
    """Leave-one-site-out: this site's own merged counts for the final model of the run that
    left it out (the operator can refuse, client_app/governance/sharing.py)."""
    final = ctx.open_model(ctx.round)
    if ctx.site in final.contributors:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "this site trained the model it is asked to score as left out")
    counts = _held_out_counts(ctx, round_=ctx.round, groups=fixed_groups(ctx.plan), keep=False)
    shared = merge_small_cells(counts, min_cell=min_cell_count(ctx.store))
    ctx.store.record_event(SiteEvent.OWN_COUNTS_SHARED, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "rows": counts.n})
    return agent_pb2.TaskReply(ok=True, counts=counts_to_proto(shared))


def importance(ctx: TaskContext) -> agent_pb2.TaskReply:
    """Permutation importance of the verified final model on the held-out split (the
    operator can refuse, client_app/governance/sharing.py)."""
    model, _ = ctx.global_model(ctx.round)
    split = ctx.split
    mean, std = ctx.standardisation()
    result = permutation_importance(model, standardise(split.test.X, mean, std), split.test.y,
                                    split.test.features, seed=ctx.plan.seed)
    ctx.store.record_event(SiteEvent.IMPORTANCE_SHARED, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "rows": len(split.test.y)})
    return agent_pb2.TaskReply(ok=True, metrics=importance_metrics(result))


def importance_metrics(result: SiteImportance) -> dict[str, float]:
    """The reply's metrics map: per-feature means, the held-out row count and the repeats."""
    metrics = {IMPORTANCE_N: float(result.n), IMPORTANCE_REPEATS: float(result.repeats)}
    for name, rise in result.log_loss_increase.items():
        metrics[IMPORTANCE_LOG_LOSS_PREFIX + name] = rise
        drop = result.auc_drop.get(name)
        if drop is not None:
            metrics[IMPORTANCE_AUC_PREFIX + name] = drop
    return metrics

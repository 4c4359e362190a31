"""Evaluation tasks at a site, all on models it decrypted itself from verified sums:
held-out counts of a round's global model, opening the verified sum of the sites' encrypted
counts, own counts for leave-one-site-out, and permutation importance of the final model.

Under DP (every plan a site accepts unless it allowed non-private studies) each answer is a
Gaussian mechanism, checked against the ceiling and recorded in the ledger before it leaves:
score histograms per group with noise on every cell (privacy/dp_evaluation.py), and
mean-substitution importance with clipped per-row contributions. Noisy histograms are
cleaned before sharing (cells below 1.5 times their noise are zero). Whatever leaves the site is
shaped for sharing too: histogram cells and groups smaller than the site's minimum cell count
are merged or suppressed, decrypted counts are rounded to whole numbers and decrypted sums of
real values are noise-flooded and rounded.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from client_app.agent.context import TaskContext
from client_app.agent.envelopes import counts_to_proto, seal_counts
from client_app.agent.signing import sign_envelope
from client_app.agent.spending import epsilon_metrics, spend
from client_app.agent.training import MAX_CONTRIBUTORS
from client_app.governance.sharing import min_cell_count
from client_app.learning.importance import (
    SiteImportance,
    permutation_importance,
    substitution_rises,
)
from client_app.learning.local_eval import keep_final_model
from client_app.learning.site_data import standardise
from client_app.store.events import SiteEvent
from client_app.store.records import ReleaseKind
from common.errors import ErrorCode, TesseraError
from common.eval_counts import (
    HeldOutCounts,
    count_held_out,
    fixed_groups,
    from_vector,
    merge_small_cells,
    require_fixed_groups,
)
from common.eval_partition import evaluation_bins, map_partition, rederive
from common.models import predict_scores
from privacy.dp_evaluation import (
    noisy_cells,
    noisy_importance,
    suppress,
    suppression_floor,
)
from privacy.flooding import flood_and_round, flooding_sigma
from privacy.release_plan import counts_mechanism, importance_mechanism
from protos.tessera.v1 import agent_pb2
from protos.wire import (
    IMPORTANCE_AUC_PREFIX,
    IMPORTANCE_EPSILON,
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
                          bins=evaluation_bins(ctx.plan))


def _noisy(ctx: TaskContext, counts: HeldOutCounts, groups: tuple[str, ...], *,
           kind: ReleaseKind, what: str,
           spent: dict[str, float]) -> HeldOutCounts:
    """The DP release of ``counts``: its partition's cells plus Gaussian noise, recorded in
    the ledger first (its figures into ``spent``); the rest is derived from the noisy cells
    (which may be negative here)."""
    mechanism = counts_mechanism(ctx.plan)
    assert mechanism is not None  # only called with DP
    spent.update(epsilon_metrics(ctx, spend(ctx, mechanism, kind=kind, what=what)))
    z = mechanism.noise_multiplier
    return map_partition(counts, groups, lambda cells: noisy_cells(cells, noise_multiplier=z))


def _cleaned(ctx: TaskContext, counts: HeldOutCounts, groups: tuple[str, ...], *,
             contributors: int | None) -> HeldOutCounts:
    """Noisy counts (one site's or a sum) with cells below 1.5 times their noise set to zero;
    ``contributors`` None: only the negative cells (the coordinator cleans the sum)."""
    floor = 0.0 if contributors is None else suppression_floor(
        noise_multiplier=ctx.plan.evaluation_policy.noise_multiplier,
        contributors=contributors)
    return map_partition(counts, groups, lambda cells: suppress(cells, floor=floor))


def evaluate(ctx: TaskContext) -> agent_pb2.TaskReply:
    """Counts of the verified global model of this round on the held-out split: an
    encrypted, signed contribution when HE is on; merged plaintext counts otherwise."""
    dp, spent = ctx.plan.privacy.dp, dict[str, float]()
    if ctx.secret is None:
        groups = require_fixed_groups(ctx.plan) if dp else fixed_groups(ctx.plan)
        counts = _held_out_counts(ctx, round_=ctx.round, groups=groups, keep=True)
        if dp and groups is not None:
            noisy = _noisy(ctx, counts, groups, kind=ReleaseKind.EVALUATION_COUNTS,
                           what=f"the evaluation of round {ctx.round}", spent=spent)
            counts = _cleaned(ctx, noisy, groups, contributors=None)
        shared = merge_small_cells(counts, min_cell=min_cell_count(ctx.store))
        if dp and groups is not None:
            shared = rederive(shared)
        proto = counts_to_proto(shared)
        ctx.store.record_event(SiteEvent.COUNTS_SENT, plan_hash=ctx.plan_hash,
                               details={"run_id": ctx.run_id, "round": ctx.round,
                                        "encrypted": False, "bytes": proto.ByteSize()})
        return agent_pb2.TaskReply(ok=True, counts=proto, metrics=spent)
    groups = require_fixed_groups(ctx.plan)
    counts = _held_out_counts(ctx, round_=ctx.round, groups=groups, keep=True)
    if dp:
        noisy = _noisy(ctx, counts, groups, kind=ReleaseKind.EVALUATION_COUNTS,
                       what=f"the evaluation of round {ctx.round}", spent=spent)
        # The signed row count is the noisy one (at least 1), the same in the vector.
        counts = replace(noisy, n=max(1, noisy.n))
    env = seal_counts(counts, groups, plan_hash=ctx.plan_hash, run_id=ctx.run_id,
                      round_=ctx.round, site=ctx.site, secret_context=ctx.secret,
                      params=ctx.params, contributors=MAX_CONTRIBUTORS)
    sign_envelope(env, ctx.identity.signing_key)
    ctx.store.record_event(SiteEvent.COUNTS_SENT, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "round": ctx.round,
                                    "encrypted": True, "digest": env.digest,
                                    "bytes": env.ByteSize()})
    return agent_pb2.TaskReply(ok=True, envelope=env, metrics=spent)


def open_counts(ctx: TaskContext) -> agent_pb2.TaskReply:
    """The verified sum of the sites' encrypted counts, decrypted, rounded and merged (and,
    under DP, cleaned of cells below 1.5 times the summed noise)."""
    if ctx.secret is None:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "evaluation counts are not encrypted in this study")
    groups = require_fixed_groups(ctx.plan)
    summed = ctx.open_counts(groups)
    dp = ctx.plan.privacy.dp
    counts = from_vector(summed.values, groups, bins=evaluation_bins(ctx.plan), signed=dp)
    if counts.n != summed.examples:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           "the summed counts cover another number of rows than was signed")
    if dp:
        released = _cleaned(ctx, counts, groups, contributors=len(summed.contributors))
    else:
        sigma = flooding_sigma(ctx.params, contributors=len(summed.contributors), released=2)
        decimals = ctx.plan.release_policy.decimals
        sums = flood_and_round(np.array([counts.log_loss_sum, counts.brier_sum]), sigma=sigma,
                               decimals=decimals)
        released = replace(counts, log_loss_sum=float(sums[0]), brier_sum=float(sums[1]))
    shared = merge_small_cells(released, min_cell=min_cell_count(ctx.store))
    if dp:
        shared = rederive(shared)
    proto = counts_to_proto(shared)
    ctx.store.record_event(SiteEvent.COUNTS_OPENED, plan_hash=ctx.plan_hash, details={
        "run_id": ctx.run_id, "round": ctx.round, "contributors": list(summed.contributors),
        "bytes": proto.ByteSize()})
    return agent_pb2.TaskReply(ok=True, counts=proto)


def evaluate_own(ctx: TaskContext) -> agent_pb2.TaskReply:
    """Leave-one-site-out: this site's own merged counts for the final model of the run that
    left it out (the operator can refuse, client_app/governance/sharing.py)."""
    final = ctx.open_model(ctx.round)
    if ctx.site in final.contributors:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "this site trained the model it is asked to score as left out")
    dp, spent = ctx.plan.privacy.dp, dict[str, float]()
    groups = require_fixed_groups(ctx.plan) if dp else fixed_groups(ctx.plan)
    counts = _held_out_counts(ctx, round_=ctx.round, groups=groups, keep=False)
    rows = counts.n
    if dp and groups is not None:
        counts = _cleaned(ctx, _noisy(ctx, counts, groups, kind=ReleaseKind.LOSO_COUNTS,
                                      what="the leave-one-site-out counts", spent=spent),
                          groups, contributors=1)
    shared = merge_small_cells(counts, min_cell=min_cell_count(ctx.store))
    if dp and groups is not None:
        shared = rederive(shared)
    proto = counts_to_proto(shared)
    ctx.store.record_event(SiteEvent.OWN_COUNTS_SHARED, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "rows": rows,
                                    "bytes": proto.ByteSize()})
    return agent_pb2.TaskReply(ok=True, counts=proto, metrics=spent)


def importance(ctx: TaskContext) -> agent_pb2.TaskReply:
    """Importance of the verified final model on the held-out split (the operator can
    refuse, client_app/governance/sharing.py): under DP the noisy mean-substitution release,
    otherwise permutation importance."""
    model, _ = ctx.global_model(ctx.round)
    split = ctx.split
    mean, std = ctx.standardisation()
    X = standardise(split.test.X, mean, std)
    mechanism = importance_mechanism(ctx.plan)
    if mechanism is None:
        result = permutation_importance(model, X, split.test.y, split.test.features,
                                        seed=ctx.plan.seed)
        metrics = importance_metrics(result)
    else:
        entry = spend(ctx, mechanism, kind=ReleaseKind.IMPORTANCE,
                      what="the feature importance")
        rises = substitution_rises(model, X, split.test.y)
        noisy = noisy_importance(rises, clip=ctx.plan.evaluation_policy.importance_clip,
                                 noise_multiplier=mechanism.noise_multiplier)
        n = max(1, round(noisy.count))
        metrics = {IMPORTANCE_N: float(n), IMPORTANCE_REPEATS: 1.0,
                   IMPORTANCE_EPSILON: epsilon_metrics(ctx, entry)["epsilon_study"]}
        for name, total in zip(split.test.features, noisy.sums, strict=True):
            metrics[IMPORTANCE_LOG_LOSS_PREFIX + name] = float(total) / n
    reply = agent_pb2.TaskReply(ok=True, metrics=metrics)
    ctx.store.record_event(SiteEvent.IMPORTANCE_SHARED, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "rows": len(split.test.y),
                                    "bytes": reply.ByteSize()})
    return reply


def importance_metrics(result: SiteImportance) -> dict[str, float]:
    """The reply's metrics map: per-feature means, the held-out row count and the repeats."""
    metrics = {IMPORTANCE_N: float(result.n), IMPORTANCE_REPEATS: float(result.repeats)}
    for name, rise in result.log_loss_increase.items():
        metrics[IMPORTANCE_LOG_LOSS_PREFIX + name] = rise
        drop = result.auc_drop.get(name)
        if drop is not None:
            metrics[IMPORTANCE_AUC_PREFIX + name] = drop
    return metrics

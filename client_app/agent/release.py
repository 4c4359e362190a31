"""The release: a site decrypts the verified final model of a run for the registry, once.

The final weights and the federation statistics are each recomputed from signed
contributions (:mod:`client_app.agent.contributions`); the decrypted sums are noise-flooded
(:mod:`privacy.flooding`) before they are divided and rounded to the plan's precision, so the
reply carries no usable trace of the decryption error.
"""

from __future__ import annotations

import numpy as np

from client_app.agent.context import TaskContext, model_layout
from client_app.agent.contributions import VerifiedSum
from client_app.agent.envelopes import layout_to_proto
from client_app.learning.statistics import standardisation_of
from client_app.store.events import SiteEvent
from privacy.flooding import flood, flooding_sigma
from protos.tessera.v1 import agent_pb2


def _released(ctx: TaskContext, opened: VerifiedSum) -> np.ndarray:
    """The decrypted sum, flooded when it was encrypted (rounding comes after division)."""
    if ctx.secret is None:
        return opened.values
    sigma = flooding_sigma(ctx.params, contributors=len(opened.contributors),
                           released=opened.values.size)
    return flood(opened.values, sigma=sigma)


def release(ctx: TaskContext) -> agent_pb2.TaskReply:
    """The final model and standardisation, from verified sums, flooded and rounded."""
    decimals = ctx.plan.release_policy.decimals
    final = ctx.open_model(ctx.round)
    ctx.global_model(ctx.round)  # the bound check on the last step
    weights = np.round(_released(ctx, final) / float(final.examples), decimals)
    stats = ctx.open_stats()
    mean, std = standardisation_of(ctx.plan, _released(ctx, stats), float(stats.examples))
    released = agent_pb2.ReleasedModel(
        values=weights.tolist(), mean=np.round(mean, decimals).tolist(),
        std=np.round(std, decimals).tolist(), features=list(ctx.plan.dataset.features))
    released.layout.extend(layout_to_proto(model_layout(ctx.plan)))
    ctx.store.record_event(SiteEvent.MODEL_RELEASED, plan_hash=ctx.plan_hash, details={
        "run_id": ctx.run_id, "round": ctx.round, "contributors": list(final.contributors),
        "bytes": released.ByteSize()})
    return agent_pb2.TaskReply(ok=True, model=released)

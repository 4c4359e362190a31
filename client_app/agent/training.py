"""Round 0 and training rounds at a site: the statistics contribution and one DP-SGD round
on the verified global model, inside the site's privacy ceiling."""

from __future__ import annotations

import logging
import secrets
import time

import numpy as np

from client_app.agent.context import TaskContext, model_layout, stats_layout
from client_app.agent.envelopes import seal_vector
from client_app.agent.row_counts import released_rows
from client_app.agent.signing import sign_envelope
from client_app.agent.spending import check_budget, epsilon_metrics, spend
from client_app.learning.site_data import standardise
from client_app.learning.statistics import (
    statistics_release,
)
from client_app.learning.training import train_local
from client_app.store.events import SiteEvent
from client_app.store.records import ReleaseKind
from common.models import model_to_vector
from privacy.accounting import DpStep, noise_for_target, plan_sampling
from privacy.ckks import check_headroom
from privacy.release_plan import planned_releases, statistics_mechanism
from protos.tessera.v1 import agent_pb2

log = logging.getLogger(__name__)

#: Largest federation the headroom check provisions for.
MAX_CONTRIBUTORS = 1000


def clip_update(update: np.ndarray, *, bound: float) -> np.ndarray:
    """Scale an update down to L2 norm ``bound`` if it is longer."""
    norm = float(np.linalg.norm(update))
    return update if norm <= bound else update * (bound / norm)


def _sealed(ctx: TaskContext, *, kind: int, values: np.ndarray, examples: int,
            layout: tuple, round_: int) -> agent_pb2.UpdateEnvelope:
    if ctx.secret is not None:
        check_headroom(ctx.params, max_abs=float(np.abs(values).max()),
                       contributors=MAX_CONTRIBUTORS)
    env = seal_vector(kind=kind, plan_hash=ctx.plan_hash, run_id=ctx.run_id, round_=round_,
                      site=ctx.site, example_count=examples, values=values, layout=layout,
                      secret_context=ctx.secret)
    sign_envelope(env, ctx.identity.signing_key)
    return env


def stats(ctx: TaskContext) -> agent_pb2.TaskReply:
    """This site's (differentially private) statistics, sealed and signed (round 0); the
    release is a Gaussian mechanism in the ledger."""
    split = ctx.split
    mechanism = statistics_mechanism(ctx.plan)
    if mechanism is not None:
        # The run must fit as a whole: nothing is spent on a run whose rounds the site could
        # not afford afterwards. (Checked at the exact row count, before any count is
        # released; the run is calibrated to the plan's target whatever the count, so the
        # answer hardly depends on it.)
        check_budget(ctx, *planned_releases(ctx.plan),
                     _planned_training(ctx, n_train=len(split.train.y)),
                     what="this run (its statistics, evaluations and every planned round)")
    rows = released_rows(ctx)  # the first run on this data releases them
    values = statistics_release(ctx.plan, split.train)
    if mechanism is not None:
        spend(ctx, mechanism, kind=ReleaseKind.STATISTICS, what="the statistics")
    env = _sealed(ctx, kind=agent_pb2.ENVELOPE_STATS, values=values,
                  examples=rows.train, layout=stats_layout(ctx.plan), round_=0)
    ctx.store.record_event(SiteEvent.STATS_SENT, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "digest": env.digest,
                                    "bytes": env.ByteSize()})
    return agent_pb2.TaskReply(ok=True, envelope=env)


def train(ctx: TaskContext) -> agent_pb2.TaskReply:
    """One DP-SGD round from the verified global model of the previous round."""
    started = time.perf_counter()
    round_, plan = ctx.round, ctx.plan
    split = ctx.split
    mean, std = ctx.standardisation()
    X = standardise(split.train.X, mean, std)
    model, start = ctx.global_model(round_ - 1)
    if plan.privacy.dp:  # a site over its ceiling says so, whether or not it has counts out
        check_budget(ctx, _round_at(ctx, n_train=len(split.train.y)), what=f"round {round_}")
    # The released row count, not the exact one, sets the sample rate, the steps and the
    # weight: everything the coordinator sees about training follows from released figures.
    n_train = released_rows(ctx, release=False).train
    sample_rate, steps = plan_sampling(n_train=n_train, batch_size=plan.training.batch_size,
                                       epochs=plan.training.local_epochs)
    noise = 0.0
    if plan.privacy.dp:
        noise = _planned_training(ctx, n_train=n_train).noise_multiplier
        check_budget(ctx, DpStep(noise, sample_rate, steps), what=f"round {round_}")
    outcome = train_local(
        model, X, split.train.y.astype(np.float64), epochs=plan.training.local_epochs,
        batch_size=plan.training.batch_size, learning_rate=plan.training.learning_rate,
        dp=plan.privacy.dp, noise_multiplier=noise, max_grad_norm=plan.privacy.max_grad_norm,
        seed=secrets.randbits(62), released_rows=n_train,
    )
    # The training loss is computed from raw data without noise: it stays at the site.
    log.info("round %d trained: %d steps", round_, outcome.steps)
    metrics: dict[str, float] = {"steps": float(outcome.steps)}
    if plan.privacy.dp:
        metrics.update(_record(ctx, noise=noise, sample_rate=sample_rate, steps=outcome.steps))
    trained, _ = model_to_vector(model)
    update = clip_update(trained - start, bound=plan.privacy.update_clip)
    env = _sealed(ctx, kind=agent_pb2.ENVELOPE_WEIGHTS, values=(start + update) * n_train,
                  examples=n_train, layout=model_layout(plan), round_=round_)
    ctx.store.record_event(SiteEvent.UPDATE_SENT, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id, "round": round_,
                                    "digest": env.digest, "bytes": env.ByteSize()})
    metrics["seconds"] = time.perf_counter() - started
    metrics["verify_seconds"] = ctx.verify_seconds
    return agent_pb2.TaskReply(ok=True, envelope=env, metrics=metrics)


def _record(ctx: TaskContext, *, noise: float, sample_rate: float,
            steps: int) -> dict[str, float]:
    entry = spend(ctx, DpStep(noise, sample_rate, steps), kind=ReleaseKind.DP_SGD,
                  what=f"round {ctx.round}")
    return {**epsilon_metrics(ctx, entry), "noise_multiplier": noise,
            "sample_rate": sample_rate}


def _round_at(ctx: TaskContext, *, n_train: int) -> DpStep:
    """One round's DP-SGD steps at the run's noise, for ``n_train`` rows."""
    plan = ctx.plan
    sample_rate, steps = plan_sampling(n_train=n_train, batch_size=plan.training.batch_size,
                                       epochs=plan.training.local_epochs)
    return DpStep(_planned_training(ctx, n_train=n_train).noise_multiplier, sample_rate, steps)


def _planned_training(ctx: TaskContext, *, n_train: int) -> DpStep:
    """Every planned DP-SGD step of the run at this site (``n_train`` rows), with the noise
    set once so that they and the run's other releases together reach the plan's target."""
    plan = ctx.plan
    sample_rate, steps = plan_sampling(n_train=n_train,
                                       batch_size=plan.training.batch_size,
                                       epochs=plan.training.local_epochs)
    total = steps * plan.training.rounds
    noise = noise_for_target(target_epsilon=plan.privacy.target_epsilon,
                             delta=plan.privacy.delta, sample_rate=sample_rate, steps=total,
                             extra=planned_releases(plan))
    return DpStep(noise, sample_rate, total)

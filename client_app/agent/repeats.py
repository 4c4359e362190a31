"""A step asked again after a coordinator restart: the reply already sent, never a second
answer.

A coordinator that dies after a site answered a step (trained round k+1, evaluated it, opened
its counts, released the final model, shared importance) but before it checkpointed that
step asks the step again when the run resumes, with a new nonce. The site answered it once
and answers it at most once more in substance: when the task asks for exactly the latest step
of its kind that the site answered in this run, with exactly the same inputs
(:func:`inputs_digest`), the agent sends the reply it kept (:mod:`client_app.store.
sent_replies`) unchanged; the agent signs it afresh over the new task's nonce, as every reply.
Nothing is recomputed or spent (no ledger entry) and the audit trail records
``reply_resent``. Identical bytes tell the coordinator nothing it was not told before. (The
sums the task carries are opened, as the first answer opened them, so that the next tasks may
name them by digest; what is decrypted stays in the agent's memory.)

Any other repeat keeps its refusal: other inputs for an answered step (a coordinator fishing
for a second noisy answer on another model), an older step, a step whose reply was not kept.
The statistics step is not repeatable: a run resumes only from a checkpoint written after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from client_app.agent.context import TaskContext
from client_app.store.events import SiteEvent
from client_app.store.sent_replies import SentReply
from common.errors import ErrorCode, TesseraError
from common.eval_counts import require_fixed_groups
from privacy.signing import canonical
from protos.tessera.v1 import agent_pb2
from protos.wire import envelope_name, task_name

#: Steps a site answers at most once per run, whose kept reply a resumed run may get again.
REPEATABLE = frozenset({agent_pb2.TASK_TRAIN, agent_pb2.TASK_EVALUATE,
                        agent_pb2.TASK_OPEN_COUNTS, agent_pb2.TASK_RELEASE,
                        agent_pb2.TASK_IMPORTANCE})

_DOMAIN = b"tessera/task-inputs/v1\x00"


@dataclass(frozen=True)
class Repeat:
    """A task that asks again for the latest step of its kind this site answered in the run."""

    sent: SentReply
    #: What the task gets unless its inputs are exactly those of the kept step.
    refusal: TesseraError


def _set_inputs(ctx: TaskContext, name: str) -> dict[str, Any] | None:
    """What a verified contribution set stands for: which site's contribution with which
    payload digest, and the example total (order aside: a sum does not depend on it)."""
    request = ctx.request
    if not request.HasField(name):
        return None
    cset: agent_pb2.ContributionSet = getattr(request, name)
    if cset.envelopes:
        pairs = [(env.site, env.digest) for env in cset.envelopes]
        examples = sum(int(env.example_count) for env in cset.envelopes)
    elif cset.sum_digest:  # an attested sum, checked by verify_inputs
        pairs = list(zip(cset.sites, cset.digests, strict=True))
        examples = int(cset.example_total)
    else:  # named by digests: verify_inputs found it among the sums verified here before
        cached = ctx.sums.cached(run_id=ctx.run_id, kind=cset.kind, round_=cset.round)
        if cached is None or cached.digests != tuple(cset.digests):
            raise TesseraError(ErrorCode.NOT_CACHED,
                               f"the {name} contributions are not verified at this site")
        pairs = list(zip(cached.contributors, cached.digests, strict=True))
        examples = cached.examples
    return {"kind": envelope_name(cset.kind), "round": int(cset.round),
            "contributions": sorted([site, digest] for site, digest in pairs),
            "examples": examples}


def inputs_digest(ctx: TaskContext) -> str:
    """sha256 hex of everything a task asks the site to compute on: study, run, kind, round
    and the contribution sets it carries (never its nonce or signature). Call it once the
    task's inputs are verified (:meth:`TaskContext.verify_inputs`)."""
    request = ctx.request
    doc = {"plan_hash": request.plan_hash, "run_id": request.run_id,
           "kind": task_name(request.kind), "round": int(request.round),
           **{name: _set_inputs(ctx, name) for name in ("model", "stats", "counts")}}
    return hashlib.sha256(_DOMAIN + canonical(doc)).hexdigest()


def answer(ctx: TaskContext, repeat: Repeat | None,
           handler: Callable[[TaskContext], agent_pb2.TaskReply],
           ) -> tuple[agent_pb2.TaskReply, SentReply | None]:
    """The reply to an admitted task whose inputs are verified, and what to keep of it: the
    kept reply for a repeat (:func:`resend`, nothing new to keep), else the handler's reply,
    kept when the step is repeatable and ended well."""
    if repeat is not None:
        return resend(ctx, repeat), None
    kind = ctx.request.kind
    inputs = inputs_digest(ctx) if kind in REPEATABLE else None  # before anything is spent
    reply = handler(ctx)
    if inputs is None or not reply.ok:
        return reply, None
    return reply, SentReply(run_id=ctx.run_id, plan_hash=ctx.plan_hash, kind=task_name(kind),
                            round=ctx.round, inputs_digest=inputs,
                            reply=reply.SerializeToString())


def _open_inputs(ctx: TaskContext) -> None:
    """Open the sums the task carries, as answering it the first time did: after a good
    reply the coordinator names them by their digests alone (nothing leaves the site)."""
    request = ctx.request
    if request.HasField("stats"):
        ctx.open_stats()
    if request.HasField("model"):
        ctx.open_model(int(request.model.round))
    if request.HasField("counts"):
        ctx.open_counts(require_fixed_groups(ctx.plan))


def resend(ctx: TaskContext, repeat: Repeat) -> agent_pb2.TaskReply:
    """The kept reply when the task's inputs are exactly the kept step's; else the refusal
    the task would have got without a kept reply."""
    sent = repeat.sent
    digest = inputs_digest(ctx)
    if digest != sent.inputs_digest or sent.plan_hash != ctx.plan_hash:
        refusal = repeat.refusal
        raise TesseraError(refusal.code, f"{refusal.message}: this site answered that step "
                                         "for other inputs and answers each step once")
    _open_inputs(ctx)
    reply = agent_pb2.TaskReply.FromString(sent.reply)
    ctx.store.record_event(SiteEvent.REPLY_RESENT, plan_hash=ctx.plan_hash, details={
        "run_id": ctx.run_id, "task": sent.kind, "round": sent.round, "inputs": digest,
        "bytes": len(sent.reply),
        **({"digest": reply.envelope.digest} if reply.HasField("envelope") else {})})
    return reply

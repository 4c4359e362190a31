"""Federated evaluation on the coordinator: from the sites' counts to metrics.

With HE on, each site sends its held-out counts as one encrypted, signed "eval" envelope in
the plan's fixed layout; the coordinator checks and adds them like model updates, then asks
one site (the custodian first) to open the sum. That site refuses anything but a true
aggregate, so the coordinator only ever sees counts summed over at least the plan's minimum
sites, and per-site numbers are not available to it. With HE off, sites send plaintext
counts, which the coordinator sums itself and also turns into a per-site breakdown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from common.evaluation import summarise
from protos.tessera.v1 import agent_pb2
from server.envelopes import check_envelope, sum_envelopes
from server.study_run import StudyRun
from server.tasks import Reply, ReplyCheck, build_messages, read_replies

log = logging.getLogger(__name__)

#: The metrics kept per site (plaintext counts) and per held-out site (leave-one-site-out).
HEADLINE = ("auc", "accuracy", "f1", "brier", "ece", "n")


@dataclass
class EvalRound:
    """What one evaluation round produced: the summary, and who was left out and why."""

    summary: dict[str, Any] | None = None
    contributors: list[str] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)
    bytes_up: dict[str, int] = field(default_factory=dict)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline metrics of a summary (``None`` where undefined)."""
    return {key: summary.get(key) for key in HEADLINE}


def sum_counts(counts: list[agent_pb2.EvalCounts]) -> dict[str, Any] | None:
    """Metrics of the union of the sites' held-out splits, from summed counts only.

    Groups without any row (a declared category no site has) are left out of the fairness
    report: they have no rates.
    """
    totals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for item in counts:
        for hist in item.histograms:
            pos = np.asarray(hist.pos, dtype=np.int64)
            neg = np.asarray(hist.neg, dtype=np.int64)
            if hist.group in totals:
                pos, neg = pos + totals[hist.group][0], neg + totals[hist.group][1]
            totals[hist.group] = (pos, neg)
    if "" not in totals:
        return None
    pos, neg = totals.pop("")
    groups = {g: h for g, h in totals.items() if h[0].sum() + h[1].sum() > 0}
    summary = summarise(
        pos, neg, groups=groups or None,
        log_loss_sum=float(sum(c.log_loss_sum for c in counts)),
        brier_sum=float(sum(c.brier_sum for c in counts)),
        n=int(sum(c.n for c in counts)),
    )
    summary["sites"] = len(counts)
    return summary


def evaluate_round(grid: Grid, run: StudyRun, round_: int, replies: list[Reply]) -> EvalRound:
    """Turn one round's evaluation replies into metrics (encrypted or plaintext counts)."""
    out = EvalRound()
    usable: list[tuple[str, agent_pb2.TaskReply]] = []
    for item in replies:
        site = run.evaluators.get(item.node_id, f"node-{item.node_id}")
        if item.reply is None:
            out.problems.append({"site": site, "code": "no_reply", "reason": item.failure})
        elif not item.reply.ok:
            out.problems.append({"site": site, "code": item.reply.error_code,
                                 "reason": item.reply.reason})
        else:
            out.bytes_up[site] = item.size
            usable.append((site, item.reply))
    if run.plan.he.enabled:
        _encrypted(grid, run, round_, usable, out)
    else:
        _plaintext(usable, out)
    return out


def _plaintext(usable: list[tuple[str, agent_pb2.TaskReply]], out: EvalRound) -> None:
    counts = [reply.counts for _, reply in usable if reply.HasField("counts")]
    out.contributors = [site for site, reply in usable if reply.HasField("counts")]
    out.summary = sum_counts(counts)
    if out.summary is None:
        return
    per_site: dict[str, Any] = {}
    for site, reply in usable:
        own = sum_counts([reply.counts]) if reply.HasField("counts") else None
        if own is not None:
            per_site[site] = headline(own)
    out.summary["per_site"] = per_site


def _encrypted(grid: Grid, run: StudyRun, round_: int,
               usable: list[tuple[str, agent_pb2.TaskReply]], out: EvalRound) -> None:
    expect = run.eval_expectation(round_)
    accepted: list[agent_pb2.UpdateEnvelope] = []
    for site, reply in usable:
        if reply.HasField("counts") or not reply.HasField("envelope"):
            # Plaintext counts of one site are never used (nor kept) when HE is on.
            out.problems.append({"site": site, "code": ErrorCode.BAD_ENVELOPE.value,
                                 "reason": "evaluation counts must be an encrypted envelope"})
            continue
        try:
            check_envelope(reply.envelope, sender=site, expect=expect, guard=run.guard,
                           signing_keys=run.signing_keys,
                           evaluation_context=run.evaluation_context)
        except TesseraError as err:
            out.problems.append({"site": site, "code": err.code.value, "reason": err.message})
            continue
        accepted.append(reply.envelope)
        out.contributors.append(site)
    need = run.plan.federation.min_sites
    if len(accepted) < need:
        out.problems.append({"site": "", "code": "too_few_sites",
                             "reason": f"{len(accepted)} site(s) sent counts, opening a sum "
                                       f"needs {need}"})
        return
    summed = sum_envelopes(accepted, expect=expect, evaluation_context=run.evaluation_context)
    counts = open_summed_counts(grid, run, summed, round_, out)
    if counts is None:
        return
    out.summary = sum_counts([counts])
    if out.summary is not None:
        out.summary["sites"] = len(accepted)
        out.summary["per_site"] = None  # not available to the coordinator by design


def open_summed_counts(grid: Grid, run: StudyRun, summed: agent_pb2.UpdateEnvelope,
                       round_: int, out: EvalRound) -> agent_pb2.EvalCounts | None:
    """Ask one site (the custodian first) to decrypt summed counts; None if none will."""
    by_site = {site: node for node, site in run.evaluators.items()}
    order = [run.custodian] if run.custodian in by_site else []
    order += [s for s in sorted(by_site) if s not in order]
    for site in order:
        req = run.request("open_counts", round_)
        req.eval_sum.CopyFrom(summed)
        messages, _ = build_messages(req, [by_site[site]])
        replies = read_replies(grid.send_and_receive(messages, timeout=run.timeout),
                               ReplyCheck(req, run.signing_keys, run.evaluators))
        reply = replies[0].reply if replies else None
        if reply is not None and reply.ok and reply.counts.n == summed.example_count:
            run.recorder.event("counts_opened", round=round_, site=site,
                               contributors=int(summed.contributors))
            return reply.counts
        reason = (replies[0].failure if replies else "no reply") if reply is None else \
            (reply.reason or "opened counts do not cover the summed rows")
        out.problems.append({"site": site, "code": "open_refused", "reason": reason})
    log.warning("round %d: no site opened the summed evaluation counts", round_)
    return None


def request_own_counts(grid: Grid, run: StudyRun, *, site: str, node: int,
                       final: agent_pb2.UpdateEnvelope) -> dict[str, Any]:
    """Leave-one-site-out: the held-out site's metrics for a model it did not train."""
    req = run.request("evaluate_own", run.plan.training.rounds, final)
    messages, _ = build_messages(req, [node])
    replies = read_replies(grid.send_and_receive(messages, timeout=run.timeout),
                           ReplyCheck(req, run.signing_keys, {node: site}))
    reply = replies[0].reply if replies else None
    if reply is None:
        raise TesseraError(ErrorCode.PROCESS_FAILED,
                           replies[0].failure if replies else f"{site} did not answer")
    if not reply.ok:
        code = next((c for c in ErrorCode if c.value == reply.error_code), ErrorCode.INTERNAL)
        raise TesseraError(code, f"{site} refused: {reply.reason}")
    summary = sum_counts([reply.counts])
    if summary is None:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, f"{site} sent no overall counts")
    return headline(summary)

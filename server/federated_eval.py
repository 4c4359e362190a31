"""Federated evaluation on the coordinator: from the sites' counts to metrics.

With HE on, each site sends its held-out counts as one encrypted, signed "eval" contribution
in the plan's fixed layout; the coordinator checks them like model updates and asks one site
(the custodian first) to open their sum. That site verifies every contribution, recomputes
the sum itself, requires at least the plan's minimum sites, and returns rounded, merged
counts, so the coordinator only ever sees counts summed over several sites. With HE off,
sites send plaintext counts (small cells already merged), which the coordinator sums itself
and also turns into a per-site breakdown. Under DP the counts are noisy (privacy/
dp_evaluation.py): negative cells come as zero, and the coordinator sets the summed cells
below 1.5 times the summed noise to zero before any metric is derived.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from common.eval_counts import HeldOutCounts
from common.eval_partition import map_partition
from common.evaluation import summarise
from privacy.dp_evaluation import suppress, suppression_floor
from protos.tessera.v1 import agent_pb2
from server.collect import Collected, Contributions, Refusal, collect
from server.envelopes import contribution_set
from server.study_run import StudyRun
from server.tasks import Reply

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


def sum_counts(counts: list[agent_pb2.EvalCounts], *,
               floor: float | None = None) -> dict[str, Any] | None:
    """Metrics of the union of the sites' held-out splits, from summed counts only.

    Groups without any row (a declared category no site has, or one a site suppressed) are
    left out of the fairness report: they have no rates. ``floor`` (noisy DP counts in
    plaintext): the summed group cells below it are set to zero and everything else is
    derived from the remaining cells (privacy/dp_evaluation.py).
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
    log_loss_sum = float(sum(c.log_loss_sum for c in counts))
    brier_sum = float(sum(c.brier_sum for c in counts))
    n = int(sum(c.n for c in counts))
    if floor is not None:
        groups_ = tuple(totals)
        summed = HeldOutCounts(bins=len(totals[""][0]), histograms=totals,
                               log_loss_sum=log_loss_sum, brier_sum=brier_sum, n=n)
        cleaned = map_partition(summed, groups_, lambda cells: suppress(cells, floor=floor))
        totals = dict(cleaned.histograms)
        log_loss_sum, brier_sum, n = cleaned.log_loss_sum, cleaned.brier_sum, cleaned.n
    pos, neg = totals.pop("")
    groups = {g: h for g, h in totals.items() if h[0].sum() + h[1].sum() > 0}
    summary = summarise(pos, neg, groups=groups or None, log_loss_sum=log_loss_sum,
                        brier_sum=brier_sum, n=n)
    summary["sites"] = len(counts)
    return summary


def evaluate_round(grid: Grid, run: StudyRun, round_: int, replies: list[Reply]) -> EvalRound:
    """Turn one round's evaluation replies into metrics (encrypted or plaintext counts)."""
    out = EvalRound()
    encrypted = run.plan.he.enabled
    contributions = Contributions(run.eval_expectation(round_), run.guard, run.signing_keys,
                                  run.evaluation_context) if encrypted else None
    got = collect(replies, run.evaluators, contributions=contributions)
    for site, reply in got.accepted:
        run.note_epsilon(site, reply.metrics)
    out.bytes_up = dict(got.bytes_up)
    out.problems = got.refusals_json() + got.rejections_json()
    if encrypted:
        _encrypted(grid, run, round_, got, out)
    else:
        _plaintext(run, got, out)
    return out


def plaintext_floor(run: StudyRun, contributors: int) -> float | None:
    """Under DP, the cells of ``contributors`` sites' summed plaintext counts worth keeping."""
    if not run.plan.privacy.dp or contributors < 1:
        return None
    return suppression_floor(noise_multiplier=run.plan.evaluation_policy.noise_multiplier,
                             contributors=contributors)


def _plaintext(run: StudyRun, got: Collected, out: EvalRound) -> None:
    usable = [(site, reply) for site, reply in got.accepted if reply.HasField("counts")]
    out.contributors = [site for site, _ in usable]
    out.summary = sum_counts([reply.counts for _, reply in usable],
                             floor=plaintext_floor(run, len(usable)))
    if out.summary is None:
        return
    per_site: dict[str, Any] = {}
    for site, reply in usable:
        own = sum_counts([reply.counts], floor=plaintext_floor(run, 1))
        if own is not None:
            per_site[site] = headline(own)
    out.summary["per_site"] = per_site
    _note_noise(run, out.summary, len(usable))


def _note_noise(run: StudyRun, summary: dict[str, Any], contributors: int) -> None:
    """Under DP, say how noisy the summed cells behind the metrics are."""
    floor = plaintext_floor(run, contributors)
    if floor is not None:
        z = run.plan.evaluation_policy.noise_multiplier
        summary["dp_noise"] = {"noise_multiplier": z, "sites": contributors,
                               "cell_std": z * math.sqrt(contributors),
                               "suppressed_below": floor}


def _encrypted(grid: Grid, run: StudyRun, round_: int, got: Collected, out: EvalRound) -> None:
    out.contributors = got.sites
    need = run.plan.federation.min_sites
    if len(got.envelopes) < need:
        out.problems.append(Refusal("", ErrorCode.TOO_FEW_SITES.value,
                                    f"{len(got.envelopes)} site(s) sent counts, opening a sum "
                                    f"needs {need}").to_json())
        return
    run.sets[(agent_pb2.ENVELOPE_EVAL, round_)] = contribution_set(
        agent_pb2.ENVELOPE_EVAL, round_, got.envelopes)
    examples = sum(int(e.example_count) for e in got.envelopes)
    counts = open_summed_counts(grid, run, round_, examples, out)
    if counts is None:
        return
    out.summary = sum_counts([counts])
    if out.summary is not None:
        out.summary["sites"] = len(got.envelopes)
        out.summary["per_site"] = None  # not available to the coordinator by design
        _note_noise(run, out.summary, len(got.envelopes))


def open_summed_counts(grid: Grid, run: StudyRun, round_: int, examples: int,
                       out: EvalRound) -> agent_pb2.EvalCounts | None:
    """Ask one site (the custodian first) to open the verified sum; None if none will."""
    by_site = {site: node for node, site in run.evaluators.items()}
    order = [run.custodian] if run.custodian in by_site else []
    order += [s for s in sorted(by_site) if s not in order]
    for site in order:
        node = by_site[site]
        req = run.request(site, agent_pb2.TASK_OPEN_COUNTS, round_, counts=round_)
        replies, _ = run.send(grid, {node: req}, names=run.evaluators)
        reply = replies[0].reply if replies else None
        # Under DP the opened counts are cleaned of cells below their noise, so their row
        # count is not the signed one.
        covered = run.plan.privacy.dp or (reply is not None and reply.counts.n == examples)
        if reply is not None and reply.ok and covered:
            run.recorder.event("counts_opened", round=round_, site=site,
                               contributors=len(run.sets[(agent_pb2.ENVELOPE_EVAL, round_)]
                                                .envelopes))
            return reply.counts
        reason = (replies[0].failure if replies else "no reply") if reply is None else \
            (reply.reason or "opened counts do not cover the summed rows")
        out.problems.append(Refusal(site, ErrorCode.OPEN_REFUSED.value, reason).to_json())
    log.warning("round %d: no site opened the summed evaluation counts", round_)
    return None


def request_own_counts(grid: Grid, run: StudyRun, *, site: str, node: int) -> dict[str, Any]:
    """Leave-one-site-out: the held-out site's metrics for the final model of ``run``
    (a run it did not train in)."""
    rounds = run.plan.training.rounds
    req = run.request(site, agent_pb2.TASK_EVALUATE_OWN, rounds, model=rounds, stats=True)
    replies, _ = run.send(grid, {node: req}, names={node: site})
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
    run.note_epsilon(site, reply.metrics)
    _note_noise(run, summary, 1)  # the site cleaned its own noisy cells
    out = headline(summary)
    if "dp_noise" in summary:
        out["dp_noise"] = summary["dp_noise"]
    return out

"""Encrypted FedAvg as a Flower 1.42 strategy.

Global weights travel as an aggregate envelope inside an ArrayRecord: plaintext only for
the seeded initial model, CKKS ciphertexts afterwards. The strategy checks each site's
envelope, adds accepted ciphertexts and example counts, and keeps only the encrypted sum;
sites decrypt and divide. Evaluation replies are counts (encrypted when HE is on), turned
into metrics by :mod:`server.federated_eval`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from common.errors import TesseraError
from protos.tessera.v1 import agent_pb2
from server.envelopes import check_envelope, sum_envelopes
from server.federated_eval import evaluate_round, sum_counts
from server.study_run import TERMINAL_REFUSALS, StudyRun
from server.tasks import (
    ReplyCheck,
    build_messages,
    pack_payload,
    read_replies,
    unpack_payload,
)

log = logging.getLogger(__name__)
#: sum_counts lives in server.federated_eval; it is re-exported here for existing callers.
__all__ = ["EncryptedFedAvg", "envelope_record", "record_envelope", "scalar_metrics",
           "sum_counts"]


def envelope_record(env: agent_pb2.UpdateEnvelope) -> ArrayRecord:
    """An aggregate envelope as the strategy's ArrayRecord."""
    return pack_payload(env.SerializeToString()).array_records["tessera"]


def record_envelope(arrays: ArrayRecord) -> agent_pb2.UpdateEnvelope:
    """The aggregate envelope inside the strategy's ArrayRecord."""
    return agent_pb2.UpdateEnvelope.FromString(unpack_payload(RecordDict({"tessera": arrays})))


class EncryptedFedAvg(Strategy):
    """FedAvg over CKKS ciphertexts (or plaintext with HE off), weighted by example count."""

    def __init__(self, run: StudyRun) -> None:
        self.run = run
        self._sent_at: dict[int, float] = {}
        self._requests: dict[tuple[str, int], agent_pb2.TaskRequest] = {}
        self._grid: Grid | None = None

    def summary(self) -> None:
        """Log the strategy's configuration."""
        log.info("EncryptedFedAvg: he=%s min_sites=%d", self.run.plan.he.enabled,
                 self.run.plan.federation.min_sites)

    def _check(self, kind: str, server_round: int) -> ReplyCheck:
        return ReplyCheck(self._requests[(kind, server_round)], self.run.signing_keys,
                          self.run.evaluators)

    # -- training ---------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the current global envelope to every site still training."""
        self.run.require_quorum(len(self.run.trainers), f"round {server_round}")
        req = self.run.request("train", server_round, record_envelope(arrays))
        self._requests[("train", server_round)] = req
        messages, size = build_messages(req, sorted(self.run.trainers))
        rlog = self.run.recorder.round(server_round)
        for node in self.run.trainers:
            rlog.bytes_down[self.run.trainers[node]] = size
        self._sent_at[server_round] = time.perf_counter()
        self.run.recorder.event("round_started", round=server_round,
                                sites=sorted(self.run.trainers.values()))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check envelopes, drop refused sites, add the accepted ciphertexts."""
        rlog = self.run.recorder.round(server_round)
        expect = self.run.expectation("weights", server_round, self.run.model_length)
        accepted: list[agent_pb2.UpdateEnvelope] = []
        answered: set[int] = set()
        for item in read_replies(replies, self._check("train", server_round)):
            site = self.run.trainers.get(item.node_id, f"node-{item.node_id}")
            answered.add(item.node_id)
            if item.reply is None:
                forged = item.failure.startswith("bad_signature")
                (rlog.rejected if forged else rlog.refused).append(
                    {"site": site, "code": "bad_signature" if forged else "no_reply",
                     "reason": item.failure})
                continue
            rlog.bytes_up[site] = item.size
            if not item.reply.ok:
                rlog.refused.append({"site": site, "code": item.reply.error_code,
                                     "reason": item.reply.reason})
                if item.reply.error_code in TERMINAL_REFUSALS:
                    self.run.trainers.pop(item.node_id, None)
                continue
            try:
                check_envelope(item.reply.envelope, sender=site, expect=expect,
                               guard=self.run.guard, signing_keys=self.run.signing_keys,
                               evaluation_context=self.run.evaluation_context)
            except TesseraError as err:
                rlog.rejected.append({"site": site, "code": err.code.value, "reason": err.message})
                continue
            accepted.append(item.reply.envelope)
            rlog.participating.append(site)
            rlog.site_metrics[site] = dict(item.reply.metrics)
            if "epsilon_study" in item.reply.metrics:
                self.run.site_epsilon[site] = float(item.reply.metrics["epsilon_study"])
        for node in set(self.run.trainers) - answered:
            rlog.refused.append({"site": self.run.trainers[node], "code": "no_reply",
                                 "reason": "no answer before the round timeout"})
        self.run.require_quorum(len(accepted), f"round {server_round}")
        started = time.perf_counter()
        aggregate = sum_envelopes(accepted, expect=expect,
                                  evaluation_context=self.run.evaluation_context)
        rlog.aggregation_seconds = time.perf_counter() - started
        self.run.recorder.event(
            "round_trained", round=server_round, participating=sorted(rlog.participating),
            refused=rlog.refused, rejected=rlog.rejected, bytes_up=rlog.bytes_up,
            epsilon=self.run.site_epsilon,
        )
        metrics = MetricRecord({"sites": len(accepted), "examples": int(aggregate.example_count)})
        return envelope_record(aggregate), metrics

    # -- evaluation -------------------------------------------------------------------
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Ask every admitted site to evaluate the new global model on its held-out split."""
        self._grid = grid
        if not self.run.evaluate_rounds:
            return []
        req = self.run.request("evaluate", server_round, record_envelope(arrays))
        self._requests[("evaluate", server_round)] = req
        messages, size = build_messages(req, sorted(self.run.evaluators))
        rlog = self.run.recorder.round(server_round)
        for node in self.run.evaluators:
            site = self.run.evaluators[node]
            rlog.bytes_down[site] = rlog.bytes_down.get(site, 0) + size
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Sum the sites' score histograms and derive metrics from the totals."""
        if not self.run.evaluate_rounds or self._grid is None:
            return None
        rlog = self.run.recorder.round(server_round)
        checked = read_replies(replies, self._check("evaluate", server_round))
        outcome = evaluate_round(self._grid, self.run, server_round, checked)
        for site, size in outcome.bytes_up.items():
            rlog.bytes_up[site] = rlog.bytes_up.get(site, 0) + size
        summary = outcome.summary
        if summary is None:
            self.run.recorder.event("round_not_evaluated", round=server_round,
                                    problems=outcome.problems)
            return None
        rlog.metrics = summary
        rlog.seconds = time.perf_counter() - self._sent_at.get(server_round, time.perf_counter())
        self.run.recorder.event("round_evaluated", round=server_round, metrics=summary,
                                seconds=rlog.seconds, problems=outcome.problems)
        return scalar_metrics(summary)


def scalar_metrics(summary: dict[str, Any]) -> MetricRecord:
    """The numeric, defined metrics of a summary, as Flower's MetricRecord."""
    return MetricRecord({k: float(v) for k, v in summary.items()
                         if isinstance(v, int | float) and not isinstance(v, bool)
                         and np.isfinite(v)})

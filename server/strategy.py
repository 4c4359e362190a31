"""Encrypted FedAvg as a Flower 1.42 strategy, without a coordinator-side aggregate.

Each round the strategy sends every training site a signed task carrying the previous
round's accepted contributions (none in round 1: sites build the seeded initial model
themselves) and the round-0 statistics; each site verifies and sums them, decrypts, trains
and returns a signed, encrypted contribution. The strategy checks and keeps the accepted
contributions of the round (:mod:`server.collect`); the ArrayRecord Flower passes between
steps only carries which round's set is current. Evaluation replies are counts (encrypted
when HE is on), turned into metrics by :mod:`server.federated_eval`.

Once a round is evaluated the strategy forgets what no later step builds on (earlier rounds'
sets, the round's requests) and writes the run's checkpoint (:mod:`server.checkpoint`); a
resumed run starts the strategy after its last completed round (``first_round``): Flower
counts rounds from 1, the strategy adds the rounds already done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from protos.tessera.v1 import agent_pb2
from server.attestation import attest_current
from server.checkpoint import save_checkpoint
from server.collect import Contributions, collect
from server.envelopes import contribution_set
from server.federated_eval import evaluate_round
from server.study_run import TERMINAL_REFUSALS, StudyRun
from server.tasks import ReplyCheck, build_message, read_replies

log = logging.getLogger(__name__)
_ROUND = "round"


def round_record(round_: int) -> ArrayRecord:
    """The ArrayRecord that stands for "the contributions of ``round_`` are current"."""
    return ArrayRecord({_ROUND: Array(np.array([round_], dtype=np.int64))})


def record_round(arrays: ArrayRecord) -> int:
    """The round an ArrayRecord made by :func:`round_record` stands for."""
    return int(arrays[_ROUND].numpy()[0])


class EncryptedFedAvg(Strategy):
    """FedAvg over signed contributions (CKKS ciphertexts, or plaintext with HE off)."""

    def __init__(self, run: StudyRun, *, rounds_done: int = 0) -> None:
        self.run = run
        #: Rounds completed before this strategy started (a resumed run).
        self.rounds_done = rounds_done
        self._sent_at: dict[int, float] = {}
        self._requests: dict[tuple[int, int], dict[int, agent_pb2.TaskRequest]] = {}
        self._grid: Grid | None = None

    def summary(self) -> None:
        """Log the strategy's configuration."""
        log.info("EncryptedFedAvg: he=%s min_sites=%d", self.run.plan.he.enabled,
                 self.run.plan.federation.min_sites)

    def _messages(self, kind: int, server_round: int, nodes: dict[int, str],
                  **inputs: Any) -> list[Message]:
        requests = {node: self.run.request(site, kind, server_round, **inputs)
                    for node, site in sorted(nodes.items())}
        self._requests[(kind, server_round)] = requests
        rlog = self.run.recorder.round(server_round)
        messages = []
        for node, req in requests.items():
            message, size = build_message(req, node)
            messages.append(message)
            site = nodes[node]
            rlog.bytes_down[site] = rlog.bytes_down.get(site, 0) + size
        return messages

    def _read(self, kind: int, server_round: int, replies: Iterable[Message],
              names: dict[int, str]) -> list[Any]:
        requests = self._requests.pop((kind, server_round))
        out = read_replies(replies, ReplyCheck(requests, self.run.signing_keys, names))
        for item in out:
            if item.reply is not None and item.reply.ok:
                self.run.mark_delivered(requests[item.node_id], item.reply.site)
        return out

    # -- training ---------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send every site still training its signed task for this round."""
        server_round += self.rounds_done
        self.run.require_quorum(len(self.run.trainers), f"round {server_round}")
        previous = record_round(arrays)
        model = previous if previous >= 1 else None
        self._sent_at[server_round] = time.perf_counter()  # the round's time counts attesting
        attest_current(grid, self.run)
        messages = self._messages(agent_pb2.TASK_TRAIN, server_round, self.run.trainers,
                                  model=model, stats=True)
        self.run.recorder.event("round_started", round=server_round,
                                sites=sorted(self.run.trainers.values()))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check contributions, drop refused sites, keep the accepted set of the round."""
        server_round += self.rounds_done
        rlog = self.run.recorder.round(server_round)
        started = time.perf_counter()
        checked = self._read(agent_pb2.TASK_TRAIN, server_round, replies, self.run.trainers)
        expect = self.run.expectation(agent_pb2.ENVELOPE_WEIGHTS, server_round,
                                      self.run.model_length)
        got = collect(checked, self.run.trainers, expected_nodes=sorted(self.run.trainers),
                      contributions=Contributions(expect, self.run.guard, self.run.signing_keys,
                                                  self.run.evaluation_context))
        for refusal in got.refused:
            if refusal.code in TERMINAL_REFUSALS:
                for node, site in list(self.run.trainers.items()):
                    if site == refusal.site:
                        self.run.trainers.pop(node)
        rlog.refused.extend(got.refusals_json())
        rlog.rejected.extend(got.rejections_json())
        rlog.bytes_up.update(got.bytes_up)
        for site, reply in got.accepted:
            rlog.participating.append(site)
            rlog.site_metrics[site] = dict(reply.metrics)
            self.run.note_epsilon(site, reply.metrics)
        self.run.require_quorum(len(got.envelopes), f"round {server_round}",
                                left_out=[*got.refused, *got.rejected])
        self.run.sets[(agent_pb2.ENVELOPE_WEIGHTS, server_round)] = contribution_set(
            agent_pb2.ENVELOPE_WEIGHTS, server_round, got.envelopes)
        self.run.keep_sets_from(server_round)
        rlog.aggregation_seconds = time.perf_counter() - started
        # The round's time so far; an evaluated round extends it to its summed counts.
        rlog.seconds = time.perf_counter() - self._sent_at.get(server_round, started)
        self.run.recorder.event(
            "round_trained", round=server_round, participating=sorted(rlog.participating),
            refused=rlog.refused, rejected=rlog.rejected, bytes_up=rlog.bytes_up,
            epsilon=self.run.site_epsilon,
        )
        examples = sum(int(e.example_count) for e in got.envelopes)
        metrics = MetricRecord({"sites": len(got.envelopes), "examples": examples})
        return round_record(server_round), metrics

    # -- evaluation -------------------------------------------------------------------
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Ask every admitted site to evaluate the round's verified global model."""
        server_round += self.rounds_done
        self._grid = grid
        policy = self.run.plan.evaluation_policy
        final = server_round == self.run.plan.training.rounds
        if not self.run.evaluate_rounds or not (policy.every_round or final):
            return []
        attest_current(grid, self.run)
        return self._messages(agent_pb2.TASK_EVALUATE, server_round, self.run.evaluators,
                              model=server_round, stats=True)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Sum the sites' score histograms and derive metrics from the totals; the round is
        then complete (checkpointed)."""
        server_round += self.rounds_done
        try:
            return self._evaluated(server_round, replies)
        finally:
            self._complete(server_round)

    def _evaluated(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if (agent_pb2.TASK_EVALUATE, server_round) not in self._requests or self._grid is None:
            return None
        rlog = self.run.recorder.round(server_round)
        checked = self._read(agent_pb2.TASK_EVALUATE, server_round, replies,
                             self.run.evaluators)
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

    def _complete(self, server_round: int) -> None:
        """The round is done: forget its requests and write the run's checkpoint."""
        for key in [k for k in self._requests if k[1] <= server_round]:
            del self._requests[key]
        if (agent_pb2.ENVELOPE_WEIGHTS, server_round) in self.run.sets:
            save_checkpoint(self.run, server_round)
            self.run.recorder.event("round_completed", round=server_round)


def scalar_metrics(summary: dict[str, Any]) -> MetricRecord:
    """The numeric, defined metrics of a summary, as Flower's MetricRecord."""
    return MetricRecord({k: float(v) for k, v in summary.items()
                         if isinstance(v, int | float) and not isinstance(v, bool)
                         and np.isfinite(v)})

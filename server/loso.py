"""Leave-one-site-out (LOSO) evaluation: the out-of-sample check hospitals ask for.

After the main study, for each admitted site S: run the same plan's stats round and training
rounds with every other site (a separate run id, ``<run>-loso-<S>``, recorded under the main
run's folder in ``loso/<S>``), then ask S alone to score that run's final model on its own
held-out split and return its own counts (plaintext: its own data, signed; a site may refuse).
The training sites spend privacy budget for each LOSO run: their ledgers record it under the
study's plan hash and their ceilings apply, so a site near its ceiling refuses and the run
goes on without it if the plan's minimum sites remain.

A LOSO run trains on N-1 sites; with N-1 below ``federation.min_sites`` LOSO is skipped with
the reason in the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from server.federated_eval import request_own_counts
from server.run_record import RunRecorder
from server.strategy import EncryptedFedAvg, record_round, round_record
from server.study_run import StudyRun

log = logging.getLogger(__name__)

#: The coordinator's round 0 (federation statistics), run anew for each LOSO training.
StatsRound = Callable[[Grid, StudyRun], dict[str, Any]]


@dataclass(frozen=True)
class LosoOutcome:
    """Per held-out site: its metrics on the model the other sites trained, or the error."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: str | None = None
    #: The study's epsilon at each training site after the LOSO runs (all runs of the plan).
    epsilon: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Result keys: ``loso``, ``loso_skipped``, ``loso_epsilon``."""
        return {"loso": self.results, "loso_skipped": self.skipped,
                "loso_epsilon": dict(sorted(self.epsilon.items()))}


def loso_run_id(run_id: str, site: str) -> str:
    """The run id of the LOSO training that leaves ``site`` out."""
    return f"{run_id}-loso-{site}"


def run_loso(grid: Grid, main: StudyRun, *, stats_round: StatsRound) -> LosoOutcome:
    """Leave each admitted site out in turn; never raises for one site's failure."""
    sites = sorted(main.evaluators.values())
    need = main.plan.federation.min_sites
    if len(sites) - 1 < need:
        reason = (f"leave-one-site-out trains on {len(sites) - 1} site(s) of {len(sites)} "
                  f"admitted; the plan needs at least {need}")
        main.recorder.event("loso_skipped", reason=reason)
        return LosoOutcome(skipped=reason)
    results: dict[str, dict[str, Any]] = {}
    epsilon: dict[str, float] = {}
    for held_out in sites:
        main.recorder.event("loso_started", site=held_out)
        run = _loso_run(main, held_out)
        entry: dict[str, Any] = {"run_id": run.run_id,
                                 "training_sites": sorted(run.trainers.values())}
        try:
            entry.update(_train_and_score(grid, run, held_out, main, stats_round))
        except TesseraError as err:
            entry["error"] = {"code": err.code.value, "message": err.message}
            run.recorder.event("run_failed", code=err.code.value, message=err.message)
        epsilon.update(run.site_epsilon)
        entry["epsilon_study"] = dict(sorted(run.site_epsilon.items()))
        run.recorder.write_result({"status": "failed" if "error" in entry else "completed",
                                   "held_out": held_out, **entry})
        main.recorder.event("loso_finished", site=held_out,
                            metrics={k: v for k, v in entry.items() if k != "training_sites"})
        results[held_out] = entry
    return LosoOutcome(results=results, epsilon=epsilon)


def _loso_run(main: StudyRun, held_out: str) -> StudyRun:
    run_id = loso_run_id(main.run_id, held_out)
    run = StudyRun(
        plan=main.plan, plan_toml=main.plan_toml, plan_hash=main.plan_hash, run_id=run_id,
        recorder=RunRecorder(main.recorder.folder / "loso" / held_out),
        evaluation=main.evaluation, model_length=main.model_length,
        coordinator_key=main.coordinator_key, signing_keys=main.signing_keys,
        custodian=main.custodian, timeout=main.timeout,
        evaluate_rounds=False,
    )
    run.trainers = {n: s for n, s in main.evaluators.items() if s != held_out}
    run.evaluators = dict(run.trainers)
    run.site_examples = {s: main.site_examples[s] for s in run.trainers.values()
                         if s in main.site_examples}
    return run


def _train_and_score(grid: Grid, run: StudyRun, held_out: str, main: StudyRun,
                     stats_round: StatsRound) -> dict[str, Any]:
    rounds = run.plan.training.rounds
    run.require_quorum(len(run.trainers), "leave-one-site-out training")
    stats_round(grid, run)
    outcome = EncryptedFedAvg(run).start(grid=grid, initial_arrays=round_record(0),
                                         num_rounds=rounds, timeout=run.timeout)
    if record_round(outcome.arrays) != rounds:
        raise TesseraError(ErrorCode.PROCESS_FAILED, "training ended before the last round")
    node = next(n for n, s in main.evaluators.items() if s == held_out)
    metrics = request_own_counts(grid, run, site=held_out, node=node)
    log.info("leave-one-site-out %s: auc %s", held_out, metrics.get("auc"))
    return metrics

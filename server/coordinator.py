"""One study run on the coordinator, from admission to the registered model.

Order: wait for the sites' SuperNodes, say hello (each agent checks its approval of the
plan hash), collect the signed federation statistics (round 0), run the encrypted FedAvg
rounds with per-round federated evaluation, ask the custodian site to release the final
model (it verifies and sums the final contributions itself), and register the model. Every
task is signed with the coordinator's key from its kit. Everything the launcher reports comes
from the run record.

A run checkpoints after round 0 and after every completed round (:mod:`server.checkpoint`). A
resumed run (a new Flower run that carries the original run id) says hello again (node ids
change when the coordinator restarts), takes the statistics, the sites still training and the
last round's contributions from the checkpoint and trains from the next round on; sites see
the same run id, so their schedules refuse any step they already took.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from common.eval_counts import require_fixed_groups
from common.layout import layout_length
from common.models import build_model, model_to_vector
from common.plan import parse_plan, plan_hash, statistics_length
from common.workdir import CoordinatorDir, WorkDir
from privacy.manifest import MANIFEST_FILE, SIGNING_KEY_FILE, load_manifest
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from server.audit_trail import record_run
from server.checkpoint import load_checkpoint, restore, save_checkpoint
from server.collect import Contributions, collect
from server.envelopes import contribution_set
from server.he_context import read_evaluation_context
from server.importance import federated_importance
from server.kpi import evaluate_gates
from server.loso import run_loso
from server.registry import ModelRegistry
from server.run_record import RunRecorder, run_folder
from server.strategy import EncryptedFedAvg, record_round, round_record, scalar_metrics
from server.study_run import StudyRun

log = logging.getLogger(__name__)
MODEL_FORMAT = "tessera-model/1"
#: Seconds a site has to answer one hello while a resumed run gathers its sites again.
HELLO_TIMEOUT = 20.0


def federation_keys(coordinator: Path) -> tuple[SigningKey, dict[str, str]]:
    """The coordinator's signing key and the sites' public keys, from its kit and the signed
    manifest in it. PERMISSION_DENIED without a kit: tasks must be signed."""
    kit = CoordinatorDir(coordinator).kit_dir
    manifest_path, key_path = kit / MANIFEST_FILE, kit / SIGNING_KEY_FILE
    if not manifest_path.is_file() or not key_path.is_file():
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           f"the coordinator folder has no kit with a signed manifest and a "
                           f"signing key ({kit}); sites accept only signed tasks")
    manifest = load_manifest(manifest_path)
    key = SigningKey(bytes.fromhex(key_path.read_text(encoding="ascii").strip()))
    if key.public_hex != manifest.coordinator_signing_key:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "the kit's signing key is not the manifest's coordinator key")
    return key, {entry.name: entry.signing_public_key for entry in manifest.sites}


def wait_for_nodes(grid: Grid, expected: int, *, timeout: float) -> list[int]:
    """Node ids once ``expected`` SuperNodes are connected (or all there are at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if len(nodes) >= expected or time.monotonic() > deadline:
            return nodes
        time.sleep(1.0)


def _hello(grid: Grid, run: StudyRun, nodes: list[int], *,
           timeout: float | None = None) -> list[dict[str, str]]:
    """Say hello: each agent checks the task and its approval of the plan hash; the sites
    that answer well join the run. The refusals, in report form."""
    requests = {node: run.request(f"node-{node}", agent_pb2.TASK_HELLO, 0) for node in nodes}
    replies, _ = run.send(grid, requests, timeout=timeout)
    # A node is named by the site whose signed reply came from it.
    names = {r.node_id: r.reply.site for r in replies if r.reply is not None and r.reply.site}
    got = collect(replies, names)
    for site, reply in got.accepted:
        node = next(n for n, s in names.items() if s == site)
        run.trainers[node] = site
        run.evaluators[node] = site
        # Without DP the exact count; with DP the released one comes with the statistics
        # (0 until then: a site that refuses the run releases none).
        run.site_examples[site] = int(reply.metrics.get("examples_train", 0))
        run.dataset_versions[site] = reply.dataset_version
    return got.refusals_json() + got.rejections_json()


def _admit_sites(grid: Grid, run: StudyRun, nodes: list[int]) -> list[dict[str, str]]:
    """Admit the sites of ``nodes`` (at least the plan's minimum)."""
    refused = _hello(grid, run, nodes)
    run.admission_refused = refused
    run.recorder.event("sites_admitted", sites=sorted(run.trainers.values()), refused=refused)
    run.require_quorum(len(run.trainers), "admission")
    return refused


def _readmit(grid: Grid, run: StudyRun, expected: set[str], *, wait: float) -> None:
    """After a coordinator restart: hello to the nodes until every ``expected`` site answered
    or ``wait`` seconds passed (a SuperNode reconnects to a restarted SuperLink after a
    back-off of its own, and the SuperLink may still list the node ids of the old session)."""
    deadline = time.monotonic() + wait
    refused: list[dict[str, str]] = []
    while True:
        known = set(run.trainers)
        nodes = [n for n in sorted(int(i) for i in grid.get_node_ids()) if n not in known]
        if nodes:
            refused = _hello(grid, run, nodes, timeout=min(run.timeout, HELLO_TIMEOUT))
        if expected <= set(run.trainers.values()) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    run.recorder.event("sites_admitted", sites=sorted(run.trainers.values()), refused=refused)


def federation_stats(grid: Grid, run: StudyRun) -> dict[str, Any]:
    """Round 0: each site's signed statistics contribution, checked and kept for the sites."""
    rlog = run.recorder.round(0)
    requests = {node: run.request(site, agent_pb2.TASK_STATS, 0)
                for node, site in sorted(run.trainers.items())}
    replies, sizes = run.send(grid, requests, names=run.trainers)
    for node, size in sizes.items():
        rlog.bytes_down[run.trainers[node]] = size
    expect = run.expectation(agent_pb2.ENVELOPE_STATS, 0, statistics_length(run.plan))
    got = collect(replies, run.trainers, expected_nodes=sorted(run.trainers),
                  contributions=Contributions(expect, run.guard, run.signing_keys,
                                              run.evaluation_context))
    rlog.refused.extend(got.refusals_json())
    rlog.rejected.extend(got.rejections_json())
    rlog.bytes_up.update(got.bytes_up)
    rlog.participating.extend(got.sites)
    for envelope in got.envelopes:  # each site's (released) training row count
        run.site_examples[envelope.site] = int(envelope.example_count)
    run.require_quorum(len(got.envelopes), "federation statistics",
                       left_out=[*got.refused, *got.rejected])
    run.sets[(agent_pb2.ENVELOPE_STATS, 0)] = contribution_set(agent_pb2.ENVELOPE_STATS, 0,
                                                               got.envelopes)
    run.recorder.event("stats_summed", sites=len(got.envelopes))
    save_checkpoint(run, 0)
    return rlog.to_json()


def _resume(grid: Grid, run: StudyRun, *, resumed_by: str) -> int:
    """Admit the sites again and restore the run's checkpoint; the last completed round."""
    point = load_checkpoint(run.recorder.folder)
    if point is None:
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"run {run.run_id} has no checkpoint: it ended before its "
                           "federation statistics were summed; submit the study again")
    run.recorder.event("run_resumed", from_round=point.round, flower_run=resumed_by)
    _readmit(grid, run, set(point.trainers), wait=min(run.timeout * 4, 300.0))
    run.site_examples.clear()
    restore(run, point)
    run.trainers = {n: s for n, s in run.trainers.items() if s in point.trainers}
    run.evaluators = {n: s for n, s in run.evaluators.items() if s in point.evaluators}
    run.require_quorum(len(run.trainers), f"resuming after round {point.round}")
    return point.round


def _train(grid: Grid, run: StudyRun, *, rounds_done: int, timeout: float) -> None:
    """The training rounds after ``rounds_done`` (each evaluated and checkpointed)."""
    rounds = run.plan.training.rounds
    if rounds_done >= rounds:
        return
    strategy = EncryptedFedAvg(run, rounds_done=rounds_done)
    outcome = strategy.start(grid=grid, initial_arrays=round_record(rounds_done),
                             num_rounds=rounds - rounds_done, timeout=timeout)
    if record_round(outcome.arrays) != rounds:
        raise TesseraError(ErrorCode.PROCESS_FAILED, "training ended before the last round")


def _release(grid: Grid, run: StudyRun, custodian: str) -> agent_pb2.ReleasedModel:
    rounds = run.plan.training.rounds
    by_site = {site: node for node, site in run.evaluators.items()}
    order = [custodian] if custodian in by_site else []
    order += [s for s in sorted(by_site) if s not in order]
    for site in order:
        req = run.request(site, agent_pb2.TASK_RELEASE, rounds, model=rounds, stats=True)
        replies, _ = run.send(grid, {by_site[site]: req}, names=run.evaluators)
        if replies and replies[0].reply is not None and replies[0].reply.ok:
            run.recorder.event("model_released", site=site)
            return replies[0].reply.model
    raise TesseraError(ErrorCode.PROCESS_FAILED, "no site released the final model")


def model_document(run: StudyRun, released: agent_pb2.ReleasedModel) -> bytes:
    """The registered model file: plain JSON (no pickle), enough to rebuild and standardise."""
    doc = {
        "format": MODEL_FORMAT,
        "study": run.plan.name,
        "plan_hash": run.plan_hash,
        "model": run.plan.model.model_dump(mode="json"),
        "features": list(released.features),
        "label": run.plan.dataset.label,
        "layout": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                    "length": s.length} for s in released.layout],
        "values": list(released.values),
        "mean": list(released.mean),
        "std": list(released.std),
    }
    return json.dumps(doc, indent=1).encode("utf-8")


def run_study(grid: Grid, *, plan_path: Path, run_id: str, expected_sites: int,
              workdir: Path | None = None, coordinator_dir: Path | None = None,
              custodian: str = "", timeout: float = 1800.0, loso: bool = False,
              resumed_by: str = "") -> dict[str, Any]:
    """Run a whole study and return (and write) the run result.

    The coordinator folder is ``coordinator_dir``, or ``workdir``'s ``coordinator/``. With
    ``loso``, leave-one-site-out evaluation runs after the release (server/loso.py). With
    ``resumed_by`` (the Flower run id that resumes it), run ``run_id`` goes on from its
    checkpoint.
    """
    if (workdir is None) == (coordinator_dir is None):
        raise TesseraError(ErrorCode.INTERNAL, "run_study: give workdir or coordinator_dir")
    coordinator = coordinator_dir if coordinator_dir is not None else \
        WorkDir(Path(str(workdir))).coordinator.root
    plan_toml = plan_path.read_bytes()
    plan = parse_plan(plan_toml.decode("utf-8"))
    digest = plan_hash(plan)
    recorder = RunRecorder(run_folder(coordinator, run_id))
    started = time.perf_counter()
    try:
        evaluation = read_evaluation_context(CoordinatorDir(coordinator).he_dir,
                                             plan_hash=digest) if plan.he.enabled else None
        coordinator_key, site_keys = federation_keys(coordinator)
    except TesseraError as err:  # refused before any site is asked: still a recorded result
        refused: dict[str, Any] = {
            "run_id": run_id, "plan_hash": digest, "status": "failed", "rounds": [],
            "sites": [], "error": {"code": err.code.value, "message": err.message}}
        recorder.event("run_failed", code=err.code.value, message=err.message)
        recorder.write_result(refused)
        recorder.event("run_finished", status="failed")
        return refused
    model_length = layout_length(model_to_vector(build_model(
        plan.model, n_features=len(plan.dataset.features), seed=plan.seed))[1])
    run = StudyRun(plan=plan, plan_toml=plan_toml, plan_hash=digest, run_id=run_id,
                   recorder=recorder, evaluation=evaluation, model_length=model_length,
                   coordinator_key=coordinator_key, signing_keys=site_keys,
                   custodian=custodian, timeout=timeout)
    result: dict[str, Any] = {"run_id": run_id, "plan_hash": digest, "status": "failed"}
    try:
        if plan.he.enabled:
            require_fixed_groups(plan)  # encrypted evaluation counts need the groups up front
        nodes = wait_for_nodes(grid, expected_sites, timeout=min(timeout, 300.0))
        recorder.event("nodes_connected", count=len(nodes))
        if resumed_by:
            rounds_done = _resume(grid, run, resumed_by=resumed_by)
            result["resumed_after_round"] = rounds_done
            result["stats_round"] = recorder.rounds[0].to_json()
        else:
            rounds_done = 0
            _admit_sites(grid, run, nodes)
            result["stats_round"] = federation_stats(grid, run)
        result["admission_refused"] = run.admission_refused
        _train(grid, run, rounds_done=rounds_done, timeout=timeout)
        released = _release(grid, run, custodian)
        importance = federated_importance(grid, run)
        held_out = run_loso(grid, run, stats_round=federation_stats) \
            if loso and plan.evaluation_policy.loso else None
        final_metrics = recorder.rounds[plan.training.rounds].metrics
        verdict = evaluate_gates(plan.kpis, final_metrics)
        gates = verdict.to_json()
        with ModelRegistry.open(coordinator) as registry:
            version = registry.register(
                study=plan.name, plan_hash=digest, rounds=plan.training.rounds,
                model_bytes=model_document(run, released),
                metrics={k: float(v) for k, v in scalar_metrics(final_metrics).items()
                         if isinstance(v, int | float)},
                epsilon_per_site=run.site_epsilon,
                promotable=verdict.promotable, promotion_reasons=verdict.reasons,
                lineage={"run_id": run_id, "sites": sorted(run.site_examples),
                         "dataset_versions": run.dataset_versions, "kpi_gates": gates,
                         "feature_importance": importance,
                         **({"loso": held_out.results} if held_out is not None else {})},
            )
        result.update(status="completed", final=final_metrics, model=version.to_json(),
                      kpi_gates=gates, feature_importance=importance,
                      signed_envelopes=True)
        if held_out is not None:
            result.update(held_out.to_json())
    except TesseraError as err:
        result.update(error={"code": err.code.value, "message": err.message})
        recorder.event("run_failed", code=err.code.value, message=err.message)
    finally:
        result["rounds"] = [recorder.rounds[r].to_json() for r in sorted(recorder.rounds) if r > 0]
        result["sites"] = [
            {"name": s, "examples": n, "epsilon_spent": run.site_epsilon.get(s, 0.0),
             "delta": plan.privacy.delta}
            for s, n in sorted(run.site_examples.items())
        ]
        result["seconds"] = time.perf_counter() - started
        try:
            record_run(coordinator, result)
        except TesseraError as err:
            log.warning("coordinator audit trail not updated: %s", err.code.value)
        recorder.write_result(result)
        recorder.event("run_finished", status=result["status"])
    return result

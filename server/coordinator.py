"""One study run on the coordinator, from admission to the registered model.

Order: wait for the sites' SuperNodes, say hello (each agent checks its approval of the
plan hash), sum encrypted federation statistics (round 0), run the encrypted FedAvg rounds
with per-round federated evaluation, ask the custodian site to release the final aggregate,
and register the model. Everything the launcher reports comes from the run record.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from common.eval_counts import require_fixed_groups
from common.models import build_model, model_to_vector
from common.plan import parse_plan, plan_hash
from common.workdir import CoordinatorDir, WorkDir
from privacy.digest import payload_digest
from privacy.manifest import MANIFEST_FILE, load_manifest
from protos.tessera.v1 import agent_pb2
from server.audit_trail import record_run
from server.envelopes import ENVELOPE_VERSION, check_envelope, sum_envelopes
from server.he_context import read_evaluation_context
from server.importance import federated_importance
from server.kpi import evaluate_gates
from server.loso import run_loso
from server.registry import ModelRegistry
from server.run_record import RunRecorder, run_folder
from server.strategy import EncryptedFedAvg, envelope_record, record_envelope, scalar_metrics
from server.study_run import StudyRun
from server.tasks import Reply, ReplyCheck, build_messages, read_replies

log = logging.getLogger(__name__)
MODEL_FORMAT = "tessera-model/1"


def site_signing_keys(coordinator: Path) -> dict[str, str] | None:
    """Sites' signing keys from the coordinator kit's verified manifest (None: unprovisioned)."""
    manifest_path = CoordinatorDir(coordinator).kit_dir / MANIFEST_FILE
    if not manifest_path.exists():
        return None
    manifest = load_manifest(manifest_path)
    return {entry.name: entry.signing_public_key for entry in manifest.sites}


def wait_for_nodes(grid: Grid, expected: int, *, timeout: float) -> list[int]:
    """Node ids once ``expected`` SuperNodes are connected (or all there are at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if len(nodes) >= expected or time.monotonic() > deadline:
            return nodes
        time.sleep(1.0)


def exchange(
    grid: Grid, request: agent_pb2.TaskRequest, nodes: list[int], *, timeout: float,
    run: StudyRun | None = None, bind: bool = True,
) -> tuple[list[Reply], int]:
    """Send one request to several nodes and decode (and authenticate) their replies."""
    messages, size = build_messages(request, nodes)
    replies: list[Message] = list(grid.send_and_receive(messages, timeout=timeout))
    check = None if run is None else ReplyCheck(
        request, run.signing_keys, run.evaluators if bind else None)
    return read_replies(replies, check), size


def initial_envelope(plan_hash_: str, plan: Any) -> agent_pb2.UpdateEnvelope:
    """The seeded initial model in plaintext (weight 1): the only plaintext global model."""
    model = build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)
    values, layout = model_to_vector(model)
    env = agent_pb2.UpdateEnvelope(
        version=ENVELOPE_VERSION, study=plan_hash_, round=0, example_count=1, kind="weights",
        contributors=1, values=values.tolist(),
    )
    for slot in layout:
        env.layout.add(name=slot.name, shape=list(slot.shape), offset=slot.offset,
                       length=slot.length)
    env.digest = payload_digest(values=list(env.values))
    return env


def _admit_sites(grid: Grid, run: StudyRun, nodes: list[int], timeout: float) -> list[dict]:
    refused: list[dict[str, str]] = []
    replies, _ = exchange(grid, run.request("hello", 0), nodes, timeout=timeout, run=run,
                          bind=False)
    for item in replies:
        if item.reply is None:
            refused.append({"site": f"node-{item.node_id}", "code": "no_reply",
                            "reason": item.failure})
        elif not item.reply.ok:
            refused.append({"site": item.reply.site, "code": item.reply.error_code,
                            "reason": item.reply.reason})
        else:
            run.trainers[item.node_id] = item.reply.site
            run.evaluators[item.node_id] = item.reply.site
            run.site_examples[item.reply.site] = int(item.reply.metrics["examples_train"])
            run.dataset_versions[item.reply.site] = item.reply.dataset_version
    run.recorder.event("sites_admitted", sites=sorted(run.trainers.values()), refused=refused)
    run.require_quorum(len(run.trainers), "admission")
    return refused


def _federation_stats(grid: Grid, run: StudyRun, timeout: float) -> dict[str, Any]:
    rlog = run.recorder.round(0)
    replies, size = exchange(grid, run.request("stats", 0), sorted(run.trainers),
                             timeout=timeout, run=run)
    expect = run.expectation("stats", 0, 2 * len(run.plan.dataset.features))
    accepted = []
    for item in replies:
        site = run.trainers.get(item.node_id, f"node-{item.node_id}")
        rlog.bytes_down[site] = size
        if item.reply is None or not item.reply.ok:
            reason = item.failure if item.reply is None else item.reply.reason
            rlog.refused.append({"site": site, "code": "stats_failed", "reason": reason})
            continue
        rlog.bytes_up[site] = item.size
        try:
            check_envelope(item.reply.envelope, sender=site, expect=expect, guard=run.guard,
                           signing_keys=run.signing_keys,
                           evaluation_context=run.evaluation_context)
        except TesseraError as err:
            rlog.rejected.append({"site": site, "code": err.code.value, "reason": err.message})
            continue
        accepted.append(item.reply.envelope)
        rlog.participating.append(site)
    run.require_quorum(len(accepted), "federation statistics")
    run.stats = sum_envelopes(accepted, expect=expect, evaluation_context=run.evaluation_context)
    run.recorder.event("stats_summed", sites=len(accepted))
    return rlog.to_json()


def _release(grid: Grid, run: StudyRun, final: agent_pb2.UpdateEnvelope, custodian: str,
             timeout: float) -> agent_pb2.ReleasedModel:
    by_site = {site: node for node, site in run.evaluators.items()}
    order = [custodian] if custodian in by_site else []
    order += [s for s in sorted(by_site) if s not in order]
    for site in order:
        req = run.request("release", run.plan.training.rounds, final)
        replies, _ = exchange(grid, req, [by_site[site]], timeout=timeout, run=run)
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


def run_study(grid: Grid, *, workdir: Path, plan_path: Path, run_id: str, expected_sites: int,
              custodian: str = "", timeout: float = 1800.0, loso: bool = False) -> dict[str, Any]:
    """Run a whole study and return (and write) the run result.

    With ``loso``, leave-one-site-out evaluation runs after the release (server/loso.py).
    """
    coordinator = WorkDir(workdir).coordinator.root
    plan_toml = plan_path.read_bytes()
    plan = parse_plan(plan_toml.decode("utf-8"))
    digest = plan_hash(plan)
    recorder = RunRecorder(run_folder(coordinator, run_id))
    started = time.perf_counter()
    evaluation = read_evaluation_context(CoordinatorDir(coordinator).he_dir, plan_hash=digest) \
        if plan.he.enabled else None
    initial = initial_envelope(digest, plan)
    run = StudyRun(plan=plan, plan_toml=plan_toml, plan_hash=digest, run_id=run_id,
                   recorder=recorder, evaluation=evaluation, model_length=len(initial.values),
                   signing_keys=site_signing_keys(coordinator), custodian=custodian,
                   timeout=timeout)
    result: dict[str, Any] = {"run_id": run_id, "plan_hash": digest, "status": "failed"}
    try:
        if plan.he.enabled:
            require_fixed_groups(plan)  # encrypted evaluation counts need the groups up front
        nodes = wait_for_nodes(grid, expected_sites, timeout=min(timeout, 300.0))
        recorder.event("nodes_connected", count=len(nodes))
        result["admission_refused"] = _admit_sites(grid, run, nodes, timeout)
        result["stats_round"] = _federation_stats(grid, run, timeout)
        strategy = EncryptedFedAvg(run)
        outcome = strategy.start(grid=grid, initial_arrays=envelope_record(initial),
                                 num_rounds=plan.training.rounds, timeout=timeout)
        final = record_envelope(outcome.arrays)
        if final.round != plan.training.rounds:
            raise TesseraError(ErrorCode.PROCESS_FAILED, "training ended before the last round")
        released = _release(grid, run, final, custodian, timeout)
        importance = federated_importance(grid, run, final, timeout=timeout)
        held_out = run_loso(grid, run, initial=initial, stats_round=_federation_stats) \
            if loso else None
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
                      signed_envelopes=run.signing_keys is not None)
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

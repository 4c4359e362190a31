"""Asking the sites for their drift histograms: one signed task per node, outside any run.

:func:`collect_drift` sends a ``TASK_DRIFT`` for a plan (signed with the coordinator's key
like every task, with a fresh nonce) to every connected node, checks each reply's signature
and shape, and keeps every answer in the coordinator folder (:func:`server.drift.save_answer`)
for ``tessera study drift`` to combine (with the final model's score histogram when the plan
asks for it and the site holds the model). A site that refuses (plan without ``[drift]``, sharing
switched off, budget) is reported with its reason and costs nothing.

In a deployment the request travels as a Flower run whose run config says ``task = "drift"``
(the ServerApp hands it to :func:`collect_for_run`); the run's outcome is written to
``coordinator/drift/runs/<run id>.json`` for the command that submitted it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.plan import StudyPlan, load_plan, plan_hash, plan_to_toml
from common.workdir import CoordinatorDir
from privacy.dp_drift import SCORES_METRIC, DriftBins, WatchedFeatures, watched_features
from protos.tessera.v1 import agent_pb2
from protos.wire import DRIFT_PREFIX
from server.coordinator import federation_keys, wait_for_nodes
from server.drift import DRIFT_DIR, SiteDrift, save_answer
from server.tasks import ReplyCheck, build_message, read_replies, sign_task


@dataclass(frozen=True)
class DriftCollection:
    """What one drift request brought back: answers kept, and refusals by site (or node)."""

    answers: tuple[SiteDrift, ...]
    refused: dict[str, str]

    def to_json(self) -> dict[str, object]:
        return {"answered": {a.site: a.dataset_version for a in self.answers},
                "refused": self.refused}


def collection_path(coordinator_dir: Path, run_id: str) -> Path:
    """Where a drift run's outcome is written (apart from the answers of any plan)."""
    return CoordinatorDir(coordinator_dir).root / DRIFT_DIR / "runs" / f"{run_id}.json"


def collect_for_run(grid: Grid, *, coordinator_dir: Path, plan_path: Path, run_id: str,
                    expected_sites: int, timeout: float) -> DriftCollection:
    """A drift run: wait for the sites' nodes, ask them, write the outcome (also a failure)."""
    plan = load_plan(plan_path)
    target = collection_path(coordinator_dir, run_id)
    try:
        wait_for_nodes(grid, expected_sites, timeout=min(timeout, 120.0))
        collection = collect_drift(grid, coordinator_dir=coordinator_dir, plan=plan,
                                   timeout=timeout)
    except TesseraError as err:
        atomic_write_bytes(target, json.dumps({"status": "failed", "error": {
            "code": err.code.value, "message": err.message}}).encode("utf-8"))
        raise
    atomic_write_bytes(target, json.dumps({"status": "completed", **collection.to_json()},
                                          sort_keys=True).encode("utf-8"))
    return collection


def _row(metrics: dict[str, float], row: int, bins: int) -> np.ndarray:
    values = np.zeros(bins)
    for b in range(bins):
        value = metrics.get(f"{DRIFT_PREFIX}{row}:{b}")
        if value is None or not math.isfinite(value):
            raise TesseraError(ErrorCode.DATA_INVALID,
                               "the drift reply lacks a cell of the plan's bins")
        values[b] = value
    return values


def cells_from_metrics(metrics: dict[str, float], bins: DriftBins) -> np.ndarray:
    """The (features x bins) counts of a drift reply; DATA_INVALID when any is missing."""
    return np.stack([_row(metrics, j, bins.bins) for j in range(bins.features)])


def scores_from_metrics(metrics: dict[str, float], watched: WatchedFeatures) -> np.ndarray | None:
    """The reply's score histogram (the row after the features), when the plan asks for one
    and the site sent it; None otherwise (a site without the final model)."""
    if not watched.scores or metrics.get(SCORES_METRIC) != 1.0:
        return None
    return _row(metrics, watched.bins.features, watched.bins.bins)


def collect_drift(grid: Grid, *, coordinator_dir: Path, plan: StudyPlan,
                  timeout: float = 300.0) -> DriftCollection:
    """Ask every connected site for its drift histograms of ``plan``; keep the answers."""
    watched = watched_features(plan)
    key, site_keys = federation_keys(Path(coordinator_dir))
    digest = plan_hash(plan)
    run_id = f"drift-{plan.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
    requests = {}
    for node in grid.get_node_ids():
        req = agent_pb2.TaskRequest(kind=agent_pb2.TASK_DRIFT, plan_hash=digest,
                                    plan_toml=plan_to_toml(plan).encode("utf-8"), round=0,
                                    run_id=run_id)
        requests[int(node)] = sign_task(req, key)
    messages = [build_message(req, node)[0] for node, req in requests.items()]
    replies = read_replies(grid.send_and_receive(messages, timeout=timeout),
                           ReplyCheck(requests, site_keys))
    answers, refused = [], {}
    at = datetime.now(UTC).isoformat()
    for item in replies:
        reply = item.reply
        if reply is None:
            refused[f"node {item.node_id}"] = item.failure
            continue
        if not reply.ok:
            refused[reply.site] = f"{reply.error_code}: {reply.reason}"
            continue
        try:
            cells = cells_from_metrics(dict(reply.metrics), watched.bins)
            scores = scores_from_metrics(dict(reply.metrics), watched)
        except TesseraError as err:
            refused[reply.site] = err.message
            continue
        answer = SiteDrift(site=reply.site, dataset_version=reply.dataset_version,
                           cells=cells, at=at, scores=scores)
        save_answer(Path(coordinator_dir), digest, answer)
        answers.append(answer)
    return DriftCollection(answers=tuple(answers), refused=refused)

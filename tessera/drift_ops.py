"""Asking the sites of a running coordinator for their drift histograms (a Flower run).

:func:`request_drift` submits a run of the registered model's plan with ``task = "drift"``
to the coordinator's SuperLink (the ServerApp hands it to
:func:`server.drift_collect.collect_for_run`, which sends every site a signed ``TASK_DRIFT``
and keeps their answers) and waits for the run's outcome file. ``tessera study drift
--collect`` calls it before combining the answers.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from client_app.node.commands import venv_binary
from common.errors import ErrorCode, TesseraError
from common.processes import flower_env
from common.workdir import CoordinatorDir
from server.drift_collect import collection_path
from server.registry import ModelRegistry
from tessera.coordinator_control import CoordinatorController
from tessera.coordinator_ops import CONNECTION, app_folder, coordinator_manifest, started_run_id
from tessera.study_ops import _submit_lock  # one submission at a time per coordinator

#: Seconds to wait for the outcome beyond the sites' reply timeout (process start-up).
GRACE_S = 120.0


def request_drift(coordinator: CoordinatorDir, study: str, *, version: int | None = None,
                  timeout: float = 300.0) -> dict[str, Any]:
    """Ask every site for its drift answer for ``study``'s model; the run's outcome."""
    manifest = coordinator_manifest(coordinator)
    if not CoordinatorController(coordinator).status().running:
        raise TesseraError(ErrorCode.PROCESS_FAILED,
                           "the coordinator is not running: start it with 'tessera coordinator "
                           f"start --coordinator-dir {coordinator.root}'")
    with ModelRegistry.open(coordinator.root) as registry:
        mv = registry.latest(study) if version is None else registry.get(study, version)
    root = coordinator.root.absolute()
    plan_path = CoordinatorDir(root).plan_path(mv.plan_hash)
    if not plan_path.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"{study} v{mv.version}: its plan {plan_path} "
                           "is missing")
    run_config = {"coordinator-dir": str(root), "plan": str(plan_path),
                  "expected-sites": len(manifest.sites), "round-timeout": float(timeout),
                  "task": "drift"}
    with _submit_lock(coordinator):
        app_dir, run_toml = app_folder(root, run_config)
        done = subprocess.run(
            [venv_binary("flwr"), "run", str(app_dir), CONNECTION, "--run-config", str(run_toml)],
            capture_output=True, text=True, env=flower_env(coordinator.flower_home), cwd=root,
            timeout=300, check=False)
    run_id = started_run_id(done.stdout + "\n" + done.stderr)
    outcome = collection_path(root, run_id)
    deadline = time.monotonic() + timeout + GRACE_S
    while not outcome.is_file():
        if time.monotonic() > deadline:
            raise TesseraError(ErrorCode.NO_REPLY, f"drift run {run_id} wrote no outcome within "
                               f"{timeout + GRACE_S:.0f} s ({outcome})")
        time.sleep(1.0)
    result: dict[str, Any] = json.loads(Path(outcome).read_text(encoding="utf-8"))
    return {"run_id": run_id, **result}

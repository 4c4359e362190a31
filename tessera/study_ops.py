"""Study runs on a running coordinator: submit, status, list, cancel (``tessera study ...``).

Submitting checks that the coordinator runs and (for an encrypted plan) holds the study's
add-only CKKS context, stores the plan where the ServerApp, the registry and the model cards
read it (``studies/<hash16>.toml``), writes the app bundle and run config (the coordinator
folder, the plan, the manifest's site count) and starts the run with ``flwr run``. The run id
is Flower's; the run's files are ``runs/<run id>/`` (``submitted.json`` here, then the
ServerApp's ``progress.jsonl`` and ``result.json``). A run's state comes from those files and
from whether the coordinator still runs: a run with no result whose last event is older than
the running coordinator lost its ServerApp with an earlier coordinator ("interrupted").

Resuming an interrupted run submits a new Flower run whose run config names the original run
(``resume-run``): its ServerApp goes on from the run's checkpoint under the original run id
and writes into the same run folder. ``submitted.json`` lists the Flower runs that resumed it
(``resumed``), so that ``study cancel`` stops the current one.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client_app.node.commands import venv_binary
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.plan import StudyPlan, parse_plan, plan_hash, plan_to_toml
from common.processes import flower_env
from common.workdir import CoordinatorDir, RunDir
from server.run_record import RunRecorder
from tessera.coordinator_control import CoordinatorController
from tessera.coordinator_ops import CONNECTION, app_folder, coordinator_manifest, started_run_id

#: A run's states: "submitted" (no ServerApp output yet), "running", "completed", "failed",
#: "cancelled", "interrupted" (no result and the coordinator is not running).
FINAL_STATES = ("completed", "failed", "cancelled")
#: The run argument that names the newest run.
LATEST = "latest"


@dataclass(frozen=True)
class RunStatus:
    """One study run as ``study status`` shows it."""

    run_id: str
    study: str
    plan_hash: str
    state: str
    rounds: int
    rounds_done: int
    submitted_at: str | None
    last_event: str | None
    error: str | None

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def submit(coordinator: CoordinatorDir, plan: StudyPlan, *, custodian: str = "",
           round_timeout: float = 1800.0, loso: bool = False) -> RunStatus:
    """Start a run of ``plan`` on the running coordinator; its status (with the run id)."""
    manifest = coordinator_manifest(coordinator)
    if not CoordinatorController(coordinator).status().running:
        raise TesseraError(ErrorCode.PROCESS_FAILED,
                           "the coordinator is not running: start it with 'tessera coordinator "
                           f"start --coordinator-dir {coordinator.root}'")
    if custodian and custodian not in manifest.site_names:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"--custodian: {custodian!r} is not a site of federation "
                           f"{manifest.name!r}")
    digest = plan_hash(plan)
    if plan.he.enabled:  # fail now, not after the sites are asked
        from server.he_context import read_evaluation_context  # TenSEAL: when used

        read_evaluation_context(coordinator.he_dir, plan_hash=digest)
    root = coordinator.root.absolute()
    plan_path = CoordinatorDir(root).plan_path(digest)
    plan_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not plan_path.exists():
        atomic_write_bytes(plan_path, plan_to_toml(plan).encode("utf-8"))
    run_config = {"coordinator-dir": str(root), "plan": str(plan_path),
                  "expected-sites": len(manifest.sites), "custodian": custodian,
                  "round-timeout": float(round_timeout), "loso": loso}
    run_id = _flower_run(coordinator, run_config)
    run = coordinator.run(run_id)
    run.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(run.submission_path, json.dumps({
        "run_id": run_id, "study": plan.name, "plan_hash": digest, "rounds":
        plan.training.rounds, "custodian": custodian, "loso": loso,
        "round_timeout": float(round_timeout),
        "submitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }, sort_keys=True).encode("utf-8"))
    return run_status(coordinator, run_id)


def resume(coordinator: CoordinatorDir, run_id: str) -> RunStatus:
    """Go on with an interrupted run from its checkpoint (CONFIG_INVALID for a run that
    finished or still runs, NOT_FOUND for one with no checkpoint)."""
    from server.checkpoint import load_checkpoint  # the checkpoint format: when used

    manifest = coordinator_manifest(coordinator)
    current = run_status(coordinator, run_id)
    if current.state not in FINAL_STATES and \
            not CoordinatorController(coordinator).status().running:
        raise TesseraError(ErrorCode.PROCESS_FAILED,
                           "the coordinator is not running: start it with 'tessera coordinator "
                           f"start --coordinator-dir {coordinator.root}'")
    if current.state != "interrupted":
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"run {run_id} is {current.state}: only an interrupted run resumes")
    run = coordinator.run(run_id)
    point = load_checkpoint(run.root)
    if point is None:
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"run {run_id} has no checkpoint (it stopped before its federation "
                           "statistics were summed): submit the study again")
    plan_path = CoordinatorDir(coordinator.root.absolute()).plan_path(point.plan_hash)
    if not plan_path.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"the plan of run {run_id} is not stored")
    submitted = _json(run.submission_path)
    run_config = {"coordinator-dir": str(coordinator.root.absolute()), "plan": str(plan_path),
                  "expected-sites": len(manifest.sites),
                  "custodian": str(submitted.get("custodian", "")),
                  "round-timeout": float(submitted.get("round_timeout", 1800.0)),
                  "loso": bool(submitted.get("loso", False)), "resume-run": run_id}
    flower_run = _flower_run(coordinator, run_config)
    RunRecorder(run.root).event("resume_submitted", from_round=point.round,
                                flower_run=flower_run)
    resumed = [*_list(submitted.get("resumed")), {
        "flower_run": flower_run, "from_round": point.round,
        "at": datetime.now(UTC).isoformat(timespec="seconds")}]
    atomic_write_bytes(run.submission_path, json.dumps(
        {**submitted, "resumed": resumed}, sort_keys=True).encode("utf-8"))
    return run_status(coordinator, run_id)


def _flower_run(coordinator: CoordinatorDir, run_config: dict[str, object]) -> str:
    """Start a Flower run of the study app with ``run_config``; its run id."""
    root = coordinator.root.absolute()
    with _submit_lock(coordinator):
        app_dir, run_toml = app_folder(root, run_config)
        done = subprocess.run(
            [venv_binary("flwr"), "run", str(app_dir), CONNECTION, "--run-config", str(run_toml)],
            capture_output=True, text=True, env=flower_env(coordinator.flower_home), cwd=root,
            timeout=300, check=False)
    return started_run_id(done.stdout + "\n" + done.stderr)


def run_status(coordinator: CoordinatorDir, run_id: str) -> RunStatus:
    """The state of run ``run_id`` (NOT_FOUND for a run this coordinator never started)."""
    run = _run_dir(coordinator, run_id)
    submitted = _json(run.submission_path)
    result = _json(run.result_path)
    events = progress_events(run)
    digest = str(submitted.get("plan_hash") or result.get("plan_hash") or "")
    study, rounds = str(submitted.get("study", "")), int(submitted.get("rounds", 0) or 0)
    if not study and digest:
        plan = _plan(coordinator, digest)
        study, rounds = (plan.name, plan.training.rounds) if plan else ("", 0)
    done = [int(e["round"]) for e in events
            if e.get("event") in ("round_evaluated", "round_completed")]
    error = None
    coordinator_now = None if result else CoordinatorController(coordinator).status()
    if coordinator_now is None:
        state = str(result.get("status", "failed"))
        err = result.get("error")
        error = str(err.get("message")) if isinstance(err, dict) else None
    elif not coordinator_now.running:
        state, error = "interrupted", "the coordinator stopped before the run finished"
    elif events and _before(events[-1], coordinator_now.started_at):
        state, error = "interrupted", "the coordinator was restarted while the run ran " \
            f"('tessera study resume {run_id}')"
    else:
        state = "running" if events else "submitted"
    return RunStatus(run_id=run_id, study=study, plan_hash=digest, state=state, rounds=rounds,
                     rounds_done=max(done, default=0),
                     submitted_at=_str(submitted.get("submitted_at")),
                     last_event=_str(events[-1].get("event")) if events else None, error=error)


def list_runs(coordinator: CoordinatorDir) -> list[RunStatus]:
    """Every run of the coordinator, oldest first."""
    runs_dir = coordinator.runs_dir
    if not runs_dir.is_dir():
        return []
    folders = sorted((p for p in runs_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                     key=lambda p: (_submitted_at(RunDir(p)), p.stat().st_mtime))
    return [run_status(coordinator, p.name) for p in folders]


def cancel(coordinator: CoordinatorDir, run_id: str, *, wait: float = 30.0) -> RunStatus:
    """Stop a run: Flower stops its ServerApp; a run that wrote no result is recorded as
    cancelled. A finished run is left as it is (CONFIG_INVALID)."""
    current = run_status(coordinator, run_id)
    if current.state in FINAL_STATES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"run {run_id} already finished ({current.state})")
    if current.state != "interrupted":
        resumed = _list(_json(coordinator.run(run_id).submission_path).get("resumed"))
        flower_run = str(resumed[-1].get("flower_run", run_id)) if resumed else run_id
        subprocess.run([venv_binary("flwr"), "stop", flower_run, CONNECTION],
                       capture_output=True,
                       text=True, env=flower_env(coordinator.flower_home),
                       cwd=coordinator.root, timeout=120, check=False)
    run = coordinator.run(run_id)
    deadline = time.monotonic() + wait
    while not run.result_path.exists() and time.monotonic() < deadline \
            and current.state != "interrupted":
        time.sleep(0.5)
    if not run.result_path.exists():
        recorder = RunRecorder(run.root)
        recorder.event("run_cancelled")
        recorder.write_result({"run_id": run_id, "plan_hash": current.plan_hash,
                               "status": "cancelled", "rounds": [], "sites": [],
                               "error": {"code": "cancelled",
                                         "message": "cancelled by the coordinator"}})
    return run_status(coordinator, run_id)


def run_result(coordinator: CoordinatorDir, run_id: str) -> dict[str, Any]:
    """The result the ServerApp wrote (NOT_FOUND while the run has none)."""
    run = _run_dir(coordinator, run_id)
    result = _json(run.result_path)
    if not result:
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"run {run_id} has no result yet ('tessera study status {run_id}')")
    return result


def run_plan(coordinator: CoordinatorDir, run_id: str) -> StudyPlan:
    """The plan run ``run_id`` ran."""
    status = run_status(coordinator, run_id)
    plan = _plan(coordinator, status.plan_hash) if status.plan_hash else None
    if plan is None:
        raise TesseraError(ErrorCode.NOT_FOUND, f"the plan of run {run_id} is not stored")
    return plan


def progress_events(run: RunDir) -> list[dict[str, Any]]:
    """The run's progress events so far (complete lines only)."""
    try:
        text = run.progress_path.read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def resolve_run(coordinator: CoordinatorDir, run: str) -> str:
    """``run`` itself, or for "latest" the newest run submitted to the coordinator."""
    if run != LATEST:
        return run
    runs = list_runs(coordinator)
    if not runs:
        raise TesseraError(ErrorCode.NOT_FOUND, f"no runs in {coordinator.root}")
    return runs[-1].run_id


def _run_dir(coordinator: CoordinatorDir, run_id: str) -> RunDir:
    if not run_id.isdigit():
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"RUN: {run_id!r} is not a run id (digits)")
    run = coordinator.run(run_id)
    if not run.root.is_dir():
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"no run {run_id} in {coordinator.root} ('tessera study list')")
    return run


def _submitted_at(run: RunDir) -> str:
    return str(_json(run.submission_path).get("submitted_at", ""))


def _plan(coordinator: CoordinatorDir, digest: str) -> StudyPlan | None:
    path = coordinator.plan_path(digest)
    return parse_plan(path.read_text(encoding="utf-8")) if path.is_file() else None


def _json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _before(event: dict[str, Any], started_at: str | None) -> bool:
    """Whether ``event`` was written before the coordinator started at ``started_at``."""
    if started_at is None or not isinstance(event.get("t"), int | float):
        return False
    try:
        started = datetime.fromisoformat(started_at).timestamp()
    except ValueError:
        return False
    return float(event["t"]) < started


@contextmanager
def _submit_lock(coordinator: CoordinatorDir) -> Iterator[None]:
    """One submission at a time per coordinator folder (they share the run-config file)."""
    coordinator.process_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (coordinator.process_dir / "submit.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Whole-study runs of the round benchmark (``scripts/bench_round.py``), and their summary.

It owns the four in-process configurations (real site agents and the real encrypted FedAvg
strategy behind :class:`tessera.inprocess.InProcessGrid`), ``tessera demo`` on real Flower
processes, and the per-round and final figures both are reported as: wall seconds, bytes
up and down per site, final AUC and accuracy against the centralised baseline, and epsilon.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from common.models import build_model, model_to_vector
from common.plan import StudyPlan
from server.coordinator import run_study
from tessera import local_federation
from tessera.baseline import centralised_baseline
from tessera.inprocess import InProcessGrid

BENCH_PASSPHRASE = "benchmark-only passphrase"

#: (name, HE enabled, DP enabled) of the in-process configurations, in report order.
CONFIGS: tuple[tuple[str, bool, bool], ...] = (
    ("he+dp", True, True),
    ("he", True, False),
    ("dp", False, True),
    ("plain", False, False),
)

#: Seconds after which one ``tessera demo`` run is abandoned.
DEMO_TIMEOUT = 1200.0

Json = dict[str, Any]


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def variant(plan: StudyPlan, *, he: bool, dp: bool) -> StudyPlan:
    """The plan with HE and DP switched as asked, re-validated like :func:`override`."""
    raw = plan.model_dump()
    raw["he"]["enabled"] = he
    raw["privacy"]["dp"] = dp
    return StudyPlan.model_validate(raw)


def parameter_count(plan: StudyPlan) -> int:
    """Values in the plan's model vector (what each site encrypts per round)."""
    model = build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)
    vector, _ = model_to_vector(model)
    return int(vector.size)


# -- 1. in-process study runs -----------------------------------------------------------
def run_inprocess(plan: StudyPlan, *, name: str, sites: int, n_params: int) -> Json:
    """One whole study on in-process site agents; a summary of its run result."""
    ceiling = max(10.0, plan.privacy.target_epsilon + 1.0)  # the budget never refuses here
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        started = time.perf_counter()
        fed = local_federation.build(Path(tmp) / "work", plan, sites=sites, ceilings={},
                                     passphrase=BENCH_PASSPHRASE, default_ceiling=ceiling)
        provision_s = time.perf_counter() - started
        baseline = centralised_baseline(fed)
        grid = InProcessGrid([SiteAgent(unlock_vault(site, BENCH_PASSPHRASE))
                              for site in fed.sites])
        started = time.perf_counter()
        result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path,
                           run_id=f"bench-{name}", expected_sites=sites,
                           custodian=fed.custodian)
        study_s = time.perf_counter() - started
    return summarise_run(result, name=name, plan=plan, n_params=n_params, baseline=baseline,
                         timings={"provision_seconds": provision_s, "study_seconds": study_s})


def summarise_run(result: Json, *, name: str, plan: StudyPlan, n_params: int,
                  baseline: Json, timings: dict[str, float]) -> Json:
    """Per-round and final figures of a run result (in-process or a demo report)."""
    rounds = result.get("rounds") or []
    bytes_up = [int(b) for r in rounds for b in r.get("bytes_up", {}).values()]
    bytes_down = [int(b) for r in rounds for b in r.get("bytes_down", {}).values()]
    local_s = [float(m["seconds"]) for r in rounds for m in r.get("site_metrics", {}).values()
               if "seconds" in m]
    mean_up = _mean(bytes_up)
    seconds = [float(r.get("seconds", 0.0)) for r in rounds]
    dp = plan.privacy.dp
    final = result.get("final") or {}
    auc = final.get("auc")
    return {
        "config": name,
        "he": plan.he.enabled,
        "dp": plan.privacy.dp,
        "status": result.get("status", "failed"),
        "error": result.get("error"),
        "rounds": len(rounds),
        "round_seconds": seconds,
        "mean_round_seconds": _mean(seconds),
        "mean_later_round_seconds": _mean(seconds[1:]),
        "aggregation_seconds": [float(r.get("aggregation_seconds", 0.0)) for r in rounds],
        "mean_site_train_seconds": _mean(local_s),
        "mean_bytes_up_per_site_round": mean_up,
        "mean_bytes_down_per_site_round": _mean(bytes_down),
        "model_parameters": n_params,
        "bytes_up_vs_fp32": mean_up / (4 * n_params) if mean_up is not None else None,
        "final_auc": auc,
        "final_accuracy": final.get("accuracy"),
        "baseline_auc": baseline.get("auc"),
        "baseline_accuracy": baseline.get("accuracy"),
        "auc_gap": (baseline["auc"] - auc) if auc is not None and "auc" in baseline else None,
        # Without DP there is no epsilon guarantee at all (the run result says 0.0 spent).
        "epsilon_per_site": {s["name"]: s["epsilon_spent"] for s in result.get("sites", [])}
        if dp else None,
        "epsilon_target": plan.privacy.target_epsilon if dp else None,
        "timings": {k: round(float(v), 3) for k, v in timings.items()},
    }


# -- 3. deployment runs -----------------------------------------------------------------
def run_deployment(plan: StudyPlan, *, study: str, sites: int, rounds: int, he: bool,
                   n_params: int) -> Json:
    """``tessera demo`` on real Flower processes; figures from its report.json."""
    name = "deployment-he+dp" if he else "deployment-dp"
    tessera_bin = Path(sys.executable).parent / "tessera"
    with tempfile.TemporaryDirectory(prefix="tessera-bench-demo-") as tmp:
        work, report_path = Path(tmp) / "work", Path(tmp) / "report.json"
        command = [str(tessera_bin), "demo", "--num-sites", str(sites), "--rounds", str(rounds),
                   "--study", study, "--workdir", str(work), "--report", str(report_path)]
        if not he:
            command.append("--no-he")
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True,
                                  timeout=DEMO_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return {"config": name, "status": "timeout", "timeout_seconds": DEMO_TIMEOUT}
        wall_s = time.perf_counter() - started
        if not report_path.exists():
            return {"config": name, "status": "failed", "returncode": proc.returncode,
                    "output_tail": (proc.stdout + proc.stderr)[-2000:]}
        report = json.loads(report_path.read_text(encoding="utf-8"))
    summary = summarise_run(report, name=name, plan=variant(plan, he=he, dp=plan.privacy.dp),
                            n_params=n_params, baseline=report.get("baseline") or {},
                            timings={**(report.get("timings") or {}), "wall_seconds": wall_s})
    summary["returncode"] = proc.returncode
    summary["engine"] = report.get("engine")
    return summary

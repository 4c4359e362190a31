"""What differentially private evaluation costs: the final model's true AUC and the AUC the
federation reports from noisy histograms, for the bundled studies at their plans' budget
split, against a run whose statistics and evaluation spend (almost) nothing.

Usage::

    python scripts/bench_dp_evaluation.py [--out bench-out/bench_dp_evaluation.json]
                                          [--studies breast_cancer,diabetes] [--seeds 4]
                                          [--draws 300]

For each study and seed it runs the whole study in process (three sites, DP-SGD, CKKS, the
plan as bundled, with its public seed changed) and records:

- ``true_auc``: the released model's AUC on the union of the sites' held-out rows (what the
  model is worth; the launcher plays every site, so it can score them);
- ``reported_auc``: what the coordinator reports from the sites' noisy histograms;
- ``epsilon``: each site's epsilon for the study.

Then, on the same model's held-out scores, it repeats the histogram release ``--draws``
times (noise of the summed histograms, the plan's bins and suppression) and reports the
bias and root-mean-square error of the reported AUC. ``--baseline`` adds runs where the
statistics keep their noise but the evaluation and importance are all but free (noise
multiplier 1000, importance off), so DP-SGD gets nearly the whole budget: the difference in
true AUC is what spending on evaluation costs the model. Run by hand, not by the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from common.eval_partition import evaluation_bins
from common.layout import TensorSlot
from common.metrics import auc_from_histograms, score_histograms
from common.models import build_model, predict_scores, vector_to_model
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from privacy.dp_evaluation import suppress, suppression_floor
from server.coordinator import run_study
from tessera import local_federation
from tessera.baseline import pooled_splits
from tessera.inprocess import InProcessGrid

SITES = 3
PASS = "bench dp evaluation"


def _plan(study: str, seed: int, *, baseline: bool) -> StudyPlan:
    raw = override(load_plan(bundled_plan_path(study)), seed=seed).model_dump()
    if baseline:
        raw["evaluation"].update(importance=False, noise_multiplier=1000.0)
    return StudyPlan.model_validate(raw)


def _run(plan: StudyPlan, root: Path) -> dict[str, Any]:
    fed = local_federation.build(root, plan, sites=SITES, ceilings={}, passphrase=PASS)
    agents = [SiteAgent(unlock_vault(s, PASS)) for s in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="bench", expected_sites=SITES, custodian=fed.custodian)
    doc = json.loads((fed.coordinator_dir / result["model"]["path"]).read_text())
    model = build_model(plan.model, n_features=len(doc["features"]), seed=plan.seed)
    layout = [TensorSlot(name=s["name"], shape=tuple(s["shape"]), offset=s["offset"],
                         length=s["length"]) for s in doc["layout"]]
    vector_to_model(model, np.asarray(doc["values"]), layout)
    _, test = pooled_splits(fed)
    scores = np.clip(predict_scores(model, (test.X - np.asarray(doc["mean"]))
                                    / np.asarray(doc["std"])), 0.0, 1.0)
    return {"true_auc": float(roc_auc_score(test.y, scores)),
            "reported_auc": result["final"].get("auc"),
            "held_out_rows": len(test.y),
            "epsilon": [s["epsilon_spent"] for s in result["sites"]],
            "scores": scores, "labels": test.y}


def _draws(plan: StudyPlan, scores: np.ndarray, labels: np.ndarray, draws: int,
           rng: np.random.Generator) -> dict[str, float]:
    """Bias and error of the reported AUC over fresh noise on the same model's scores."""
    bins = evaluation_bins(plan)
    z = plan.evaluation_policy.noise_multiplier
    std = z * math.sqrt(SITES)
    floor = suppression_floor(noise_multiplier=z, contributors=SITES)
    pos, neg = score_histograms(scores, labels, bins=bins)
    exact = float(roc_auc_score(labels, scores))
    errors = []
    for _ in range(draws):
        p = suppress(np.rint(pos + rng.normal(0, std, bins)), floor=floor)
        q = suppress(np.rint(neg + rng.normal(0, std, bins)), floor=floor)
        value = auc_from_histograms(p, q)
        if math.isfinite(value):
            errors.append(value - exact)
    err = np.asarray(errors)
    return {"bias": float(err.mean()), "rmse": float(np.sqrt((err**2).mean())),
            "p90_abs_error": float(np.quantile(np.abs(err), 0.9)),
            "defined": len(errors) / draws}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/bench_dp_evaluation.json"))
    parser.add_argument("--studies", default="breast_cancer,diabetes")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "sites": SITES,
                              "machine": platform.machine(), "studies": {}}
    for study in args.studies.split(","):
        entry: dict[str, Any] = {}
        for mode in (["split", "baseline"] if args.baseline else ["split"]):
            runs = []
            for seed in range(args.seeds):
                plan = _plan(study, seed, baseline=mode == "baseline")
                with tempfile.TemporaryDirectory() as tmp:
                    run = _run(plan, Path(tmp) / "w")
                scores, labels = run.pop("scores"), run.pop("labels")
                if mode == "split":
                    run["noise_draws"] = _draws(plan, scores, labels, args.draws, rng)
                runs.append({"seed": seed, **run})
                print(study, mode, seed, {k: v for k, v in run.items() if k != "noise_draws"},
                      flush=True)
            entry[mode] = {"runs": runs,
                           "mean_true_auc": float(np.mean([r["true_auc"] for r in runs]))}
        report["studies"][study] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

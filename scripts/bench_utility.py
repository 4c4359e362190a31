"""Utility at a privacy budget: the released model's AUC against the centralised,
non-private baseline, for the bundled studies at epsilon 1, 3 and 8.

Usage::

    python scripts/bench_utility.py --out FILE [--studies breast_cancer,diabetes]
                                    [--epsilons 1,3,8] [--seeds 3]

For each study, epsilon and seed it runs the whole study in process (three sites, DP-SGD,
CKKS, every release of the plan as bundled; only the plan's ``target_epsilon`` and public
seed changed) and records, on the union of the sites' held-out rows (the launcher plays every
site, so it can score them; the federation never does this):

- ``auc``: the released model's exact AUC (:func:`tessera.baseline.released_model_check`);
- ``baseline_auc``: scikit-learn logistic regression fitted on the pooled train rows
  (:func:`tessera.baseline.centralised_baseline`), the same rows for both;
- ``gap``: ``baseline_auc - auc``.

Nothing is tuned here: every hyper-parameter is the bundled plan's, fixed on synthetic
cohorts drawn from the plan's data dictionary (``scripts/tune_schedule.py``,
docs/utility.md), never on any site's rows. A budget the plan cannot meet (its evaluation,
statistics and importance releases alone spend it) is reported as refused with the reason.
The summary per study and epsilon is the mean over seeds; ``auc_gap_eps3_<study>`` is the
figure ``scripts/bench.py`` reports. Run by hand, not by the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSPHRASE = "bench utility only"
SITES = 3


def run_one(study: str, *, epsilon: float, seed: int, workdir: Path) -> dict[str, Any]:
    """One study at ``epsilon`` with public seed ``seed``: exact AUC, baseline and gap."""
    from client_app.agent.site_agent import SiteAgent
    from client_app.custody.vault import unlock_vault
    from common.errors import TesseraError
    from common.plan import bundled_plan_path, load_plan, override
    from server.coordinator import run_study
    from tessera import local_federation
    from tessera.baseline import centralised_baseline, released_model_check
    from tessera.inprocess import InProcessGrid

    row: dict[str, Any] = {"study": study, "epsilon": epsilon, "seed": seed}
    started = time.perf_counter()
    try:
        plan = override(load_plan(bundled_plan_path(study)), target_epsilon=epsilon, seed=seed)
        fed = local_federation.build(workdir, plan, sites=SITES, ceilings={},
                                     passphrase=PASSPHRASE, default_ceiling=max(10.0, 2 * epsilon))
        agents = [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites]
        result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                           run_id="utility", expected_sites=SITES, custodian=fed.custodian)
    except TesseraError as exc:
        return {**row, "status": "refused", "reason": exc.message}
    row["seconds"] = time.perf_counter() - started
    if result["status"] != "completed":
        return {**row, "status": result["status"], "reason": json.dumps(result.get("error"))}
    check = released_model_check(fed, result) or {}
    auc, baseline_auc = float(check["auc"]), float(centralised_baseline(fed)["auc"])  # type: ignore[arg-type]
    spent = [s["epsilon_spent"] for s in result["sites"]]
    return {**row, "status": "completed", "auc": auc, "accuracy": check.get("accuracy"),
            "baseline_auc": baseline_auc, "gap": baseline_auc - auc,
            "epsilon_spent_max": max(spent)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean AUC, baseline and gap per study and epsilon over the completed seeds."""
    table: dict[str, Any] = {}
    for key in sorted({(r["study"], r["epsilon"]) for r in rows}):
        done = [r for r in rows if (r["study"], r["epsilon"]) == key
                and r["status"] == "completed"]
        entry: dict[str, Any] = {"runs": len(done)}
        if done:
            for name in ("auc", "baseline_auc", "gap"):
                entry[name] = statistics.fmean(r[name] for r in done)
            entry["gap_max"] = max(r["gap"] for r in done)
        else:
            entry["reason"] = next((r.get("reason") for r in rows
                                    if (r["study"], r["epsilon"]) == key), None)
        table[f"{key[0]}@{key[1]:g}"] = entry
    return table


def measure(studies: list[str], epsilons: list[float], seeds: int) -> dict[str, Any]:
    """Every run and the summary table, plus ``auc_gap_eps3_<study>`` where measured."""
    logging.getLogger("flwr").setLevel(logging.WARNING)
    rows = []
    for study in studies:
        for epsilon in epsilons:
            for seed in range(seeds):
                with tempfile.TemporaryDirectory() as scratch:
                    rows.append(run_one(study, epsilon=epsilon, seed=seed,
                                        workdir=Path(scratch) / "work"))
                print(json.dumps(rows[-1]), file=sys.stderr)
    table = summarise(rows)
    out: dict[str, Any] = {"runs": rows, "table": table}
    for study in studies:
        entry = table.get(f"{study}@3", {})
        out[f"auc_gap_eps3_{study}"] = entry.get("gap")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--studies", default="breast_cancer,diabetes")
    parser.add_argument("--epsilons", default="1,3,8")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = measure(args.studies.split(","), [float(e) for e in args.epsilons.split(",")],
                     args.seeds)
    result.update(python=platform.python_version(), seconds=time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result["table"], indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

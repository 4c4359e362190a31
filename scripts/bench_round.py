"""Benchmark a small Tessera study with and without CKKS encryption and DP, and write JSON.

Usage::

    python scripts/bench_round.py [--out bench-out/bench_round.json] [--sites 3] [--rounds 3]
                                  [--study breast_cancer] [--reps 5] [--deployment]

It measures, on this machine:

1. the same study run in process (real site agents and the real encrypted FedAvg strategy
   behind :class:`tessera.inprocess.InProcessGrid`) in four configurations: HE+DP, HE only,
   DP only, neither; per-round wall seconds, bytes up per site per round (and relative to a
   float32 copy of the model), final AUC and accuracy against the centralised baseline, and
   the epsilon each site spent;
2. micro-benchmarks of the pieces: CKKS encryption of a model-sized vector and of 100,000
   values, encrypted aggregation of N site vectors against a plaintext numpy sum, decryption,
   the CKKS error of a 100-contributor mean, and local training with and without DP-SGD;
3. with ``--deployment``, ``tessera demo`` (real Flower processes) with and without HE.

Every run works in its own temporary folder, removed afterwards. The script is run by hand,
not by the tests; with the defaults it takes a few minutes on a 2-core machine.

This module is the command line and the JSON document; the measurements live beside it:
``bench_round_runs.py`` (1 and 3), ``bench_round_micro.py`` (2) and ``bench_round_report.py``
(the machine description and the printed table).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench_round_micro import bench_ckks, bench_training
from bench_round_report import Json, machine, print_summary
from bench_round_runs import CONFIGS, parameter_count, run_deployment, run_inprocess, variant

from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from privacy.accounting import noise_for_target


def _load(study: str) -> StudyPlan:
    """A bundled study by name, or a plan file when ``study`` ends in ``.toml``."""
    return load_plan(Path(study) if study.endswith(".toml") else bundled_plan_path(study))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/bench_round.json"))
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--study", default="breast_cancer",
                        help="bundled study name or a plan file (.toml)")
    parser.add_argument("--reps", type=int, default=5,
                        help="repetitions of each CKKS micro-benchmark (median taken)")
    parser.add_argument("--deployment", action="store_true",
                        help="also run `tessera demo` (real Flower processes) with and "
                             "without HE")
    args = parser.parse_args(argv)
    if args.sites < 1 or args.rounds < 1 or args.reps < 1:
        parser.error("--sites, --rounds and --reps must be at least 1")
    logging.getLogger("flwr").setLevel(logging.WARNING)

    base = _load(args.study)
    base = override(base, rounds=args.rounds,
                    min_sites=min(args.sites, base.federation.min_sites))
    n_params = parameter_count(base)
    started = time.perf_counter()

    print("warm-up study (discarded) ...", flush=True)
    run_inprocess(override(base, rounds=1), name="warm-up", sites=args.sites,
                  n_params=n_params)
    runs = []
    for name, he, dp in CONFIGS:
        print(f"in-process study: {name} ...", flush=True)
        # Each run calibrates its DP noise afresh, as a newly started site agent does.
        noise_for_target.cache_clear()
        runs.append(run_inprocess(variant(base, he=he, dp=dp), name=name, sites=args.sites,
                                  n_params=n_params))
    print("micro-benchmarks ...", flush=True)
    micro = {"ckks": bench_ckks(base, sites=args.sites, n_params=n_params, reps=args.reps),
             "training": bench_training(base, sites=args.sites)}
    deployment = []
    if args.deployment:
        for he in (True, False):
            print(f"tessera demo ({'HE' if he else 'no HE'}) ...", flush=True)
            deployment.append(run_deployment(base, study=args.study, sites=args.sites,
                                             rounds=args.rounds, he=he, n_params=n_params))

    doc: Json = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "study": {"name": base.name, "sites": args.sites, "rounds": args.rounds,
                  "model": base.model.model_dump(mode="json"), "model_parameters": n_params,
                  "local_epochs": base.training.local_epochs,
                  "batch_size": base.training.batch_size,
                  "target_epsilon": base.privacy.target_epsilon, "delta": base.privacy.delta},
        "runs": runs,
        "micro": micro,
        "deployment": deployment,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print_summary(doc)
    print(f"written to {args.out}")
    failed = [r["config"] for r in runs + deployment if r.get("status") != "completed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

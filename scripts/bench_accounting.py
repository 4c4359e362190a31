"""Benchmark DP noise calibration (PLD against the former RDP search) and write JSON.

Usage::

    python scripts/bench_accounting.py [--out bench-out/bench_accounting.json] [--reps 5]
                                       [--study breast_cancer] [--sites 3]

For each shape (the demo's per-site training split of the study plan, over all its rounds,
and a larger 10k-row site: batch 256, 30 epochs) and each target epsilon it measures, at
the plan's delta and uncached (median of ``--reps`` runs, caches cleared each time):

- ``pld``: :func:`privacy.accounting.noise_for_target`, the calibration a site agent runs
  (RDP bracket, coarse PLD search, fine PLD check);
- ``rdp``: the former calibration, Opacus's ``get_noise_multiplier`` on its RDP accountant
  (epsilon tolerance 1e-3);

and reports both noise multipliers, how much less noise PLD needs, and the ledger (PLD) and
cross-check (RDP) epsilon of the PLD noise. The script is run by hand, not by the tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from common.datasets import load_bundled, partition_indices, select, stratified_split
from common.plan import StudyPlan, bundled_plan_path, load_plan
from privacy import pld, rdp
from privacy.accounting import (
    DpStep,
    epsilon_for_history,
    noise_for_target,
    plan_sampling,
    rdp_epsilon_for_history,
)

Json = dict[str, Any]
TARGETS = (1.0, 3.0, 8.0)


def _load(study: str) -> StudyPlan:
    path = Path(study) if study.endswith(".toml") else bundled_plan_path(study)
    return load_plan(path)


def demo_train_rows(plan: StudyPlan, *, sites: int) -> int:
    """Training rows of the demo's first site (the same split ``tessera demo`` makes)."""
    data = select(load_bundled(plan.dataset.name), plan.dataset)
    parts = partition_indices(data.y, sites, seed=plan.seed, scheme=plan.dataset.partition,
                              alpha=plan.dataset.alpha)
    rows = np.asarray(parts[0], dtype=np.int64)
    train, _ = stratified_split(data.y[rows], test_fraction=plan.dataset.test_fraction,
                                seed=plan.seed)
    return len(train)


def _clear_caches() -> None:
    noise_for_target.cache_clear()
    for cached in (pld._epsilon, pld._distribution, rdp._rdp_per_step):
        cached.cache_clear()


def _median_seconds(fn: Callable[[], float], reps: int) -> tuple[float, float]:
    """(median seconds, result) of ``reps`` cold runs of ``fn``."""
    times, result = [], 0.0
    for _ in range(reps):
        _clear_caches()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _opacus_rdp_noise(*, target: float, delta: float, sample_rate: float, steps: int) -> float:
    """The former calibration: Opacus's RDP search, as privacy.accounting ran it before."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        return float(get_noise_multiplier(
            target_epsilon=target, target_delta=delta, sample_rate=sample_rate, steps=steps,
            accountant="rdp", epsilon_tolerance=1e-3,
        ))


def bench_shape(name: str, *, n_train: int, batch_size: int, epochs: int, delta: float,
                reps: int) -> list[Json]:
    sample_rate, steps = plan_sampling(n_train=n_train, batch_size=batch_size, epochs=epochs)
    rows = []
    for target in TARGETS:
        print(f"{name}: epsilon {target:g} ...", flush=True)
        pld_s, pld_noise = _median_seconds(partial(
            noise_for_target, target_epsilon=target, delta=delta, sample_rate=sample_rate,
            steps=steps), reps)
        rdp_s, rdp_noise = _median_seconds(partial(
            _opacus_rdp_noise, target=target, delta=delta, sample_rate=sample_rate,
            steps=steps), reps)
        step = [DpStep(pld_noise, sample_rate, steps)]
        rows.append({
            "shape": name, "n_train": n_train, "batch_size": batch_size, "epochs": epochs,
            "sample_rate": sample_rate, "steps": steps, "delta": delta,
            "target_epsilon": target,
            "pld_noise": round(pld_noise, 5), "rdp_noise": round(rdp_noise, 5),
            "pld_noise_saving": round(1 - pld_noise / rdp_noise, 4),
            "pld_seconds": round(pld_s, 4), "rdp_seconds": round(rdp_s, 4),
            "ledger_epsilon_at_pld_noise": round(epsilon_for_history(step, delta=delta), 5),
            "rdp_epsilon_at_pld_noise": round(rdp_epsilon_for_history(step, delta=delta), 5),
        })
    return rows


def machine() -> Json:
    versions = {name: metadata.version(name) for name in ("dp-accounting", "opacus", "numpy")}
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "versions": versions}


def print_summary(rows: list[Json]) -> None:
    header = f"{'shape':<10}{'q':>8}{'steps':>7}{'eps':>6}{'PLD noise':>11}{'RDP noise':>11}" \
             f"{'saving':>8}{'PLD s':>8}{'RDP s':>8}"
    print(header)
    for r in rows:
        print(f"{r['shape']:<10}{r['sample_rate']:>8.4f}{r['steps']:>7}{r['target_epsilon']:>6g}"
              f"{r['pld_noise']:>11.4f}{r['rdp_noise']:>11.4f}{r['pld_noise_saving']:>8.1%}"
              f"{r['pld_seconds']:>8.3f}{r['rdp_seconds']:>8.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/bench_accounting.json"))
    parser.add_argument("--reps", type=int, default=5, help="cold runs per figure (median)")
    parser.add_argument("--study", default="breast_cancer",
                        help="bundled study name or a plan file (.toml)")
    parser.add_argument("--sites", type=int, default=3, help="sites the demo splits data into")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.sites < 1:
        parser.error("--reps and --sites must be at least 1")
    plan = _load(args.study)
    t = plan.training
    delta = plan.privacy.delta
    n_demo = demo_train_rows(plan, sites=args.sites)
    # Warm-up: imports and first-call overheads are not calibration time.
    noise_for_target(target_epsilon=2.0, delta=delta, sample_rate=0.1, steps=10)
    _opacus_rdp_noise(target=2.0, delta=delta, sample_rate=0.1, steps=10)
    started = time.perf_counter()
    rows = bench_shape("demo", n_train=n_demo, batch_size=t.batch_size,
                       epochs=t.local_epochs * t.rounds, delta=delta, reps=args.reps)
    rows += bench_shape("10k", n_train=10_000, batch_size=256, epochs=30, delta=delta,
                        reps=args.reps)
    doc: Json = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "study": {"name": plan.name, "sites": args.sites, "demo_train_rows": n_demo,
                  "batch_size": t.batch_size, "local_epochs": t.local_epochs,
                  "rounds": t.rounds, "delta": delta},
        "reps": args.reps,
        "results": rows,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print_summary(rows)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Recompute every dataset's epsilon in a Tessera privacy ledger with dp-accounting's PLD.

Reads the JSON of ``tessera site budget --json`` (a file, or ``-`` for stdin) and, for each
dataset, composes the privacy loss distributions of all its entries at the dataset's delta
with Google's ``dp_accounting`` directly (no Tessera code), then compares with the epsilon
the site reports. Exit status 1 if any reported figure is below the recomputed one.

    tessera site budget --site-dir SITE --json > ledger.json
    python scripts/recompute_epsilon.py ledger.json [--discretisation 1e-4] [--each-entry]

Mechanisms (parameters are relative to the L2 sensitivity; add-or-remove neighbours):
``poisson_subsampled_gaussian`` {noise_multiplier, sample_rate, steps}: ``steps`` DP-SGD
steps, each a Gaussian of standard deviation ``noise_multiplier`` on a Poisson sample at
``sample_rate``; ``gaussian`` {noise_multiplier, count}: ``count`` Gaussian releases, which
compose exactly into one Gaussian of noise ``noise_multiplier / sqrt(count)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

from dp_accounting.pld import privacy_loss_distribution as pld


def _pld(name: str, sigma: float, rate: float, times: int, grid: float):
    if name == "gaussian" or rate >= 1.0:  # k Gaussians compose into one, sigma / sqrt(k)
        return pld.from_gaussian_mechanism(sigma / math.sqrt(times), pessimistic_estimate=True,
                                           value_discretization_interval=grid)
    one = pld.from_gaussian_mechanism(sigma, sampling_prob=rate, pessimistic_estimate=True,
                                      value_discretization_interval=grid)
    return one.self_compose(times)


def epsilon(entries: list[dict], delta: float, grid: float) -> float:
    """Pessimistic PLD epsilon at ``delta`` of the composition of ``entries``."""
    groups: Counter[tuple[str, float, float]] = Counter()
    for entry in entries:
        name, p = entry["mechanism"], entry["parameters"]
        if name in ("poisson_subsampled_gaussian", "dp_sgd"):
            groups["dp_sgd", p["noise_multiplier"], p["sample_rate"]] += p["steps"]
        elif name == "gaussian":
            groups["gaussian", p["noise_multiplier"], 1.0] += p["count"]
        else:
            raise SystemExit(f"entry {entry['id']}: unknown mechanism {name!r}")
    if not groups:
        return 0.0
    dists = [_pld(name, sigma, rate, times, grid)
             for (name, sigma, rate), times in sorted(groups.items())]
    composed = dists[0]
    for dist in dists[1:]:
        composed = composed.compose(dist)
    return max(0.0, composed.get_epsilon_for_delta(delta))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ledger", help="the JSON of `tessera site budget --json`, or -")
    parser.add_argument("--discretisation", type=float, default=1e-4)
    parser.add_argument("--each-entry", action="store_true",
                        help="also recompute each entry's figures at its own delta")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.ledger == "-" else Path(args.ledger).read_text("utf-8")
    doc = json.loads(text)
    failures = 0
    for dataset in doc["datasets"]:
        entries = [e for e in doc["entries"] if e["dataset_id"] == dataset["dataset"]]
        if not entries:
            continue
        mine = epsilon(entries, dataset["delta"], args.discretisation)
        ok = dataset["epsilon"] >= mine
        failures += not ok
        print(f"{dataset['dataset']}: reported {dataset['epsilon']:.6f}, recomputed "
              f"{mine:.6f} at delta {dataset['delta']:.3g} ({len(entries)} entries) "
              f"{'ok' if ok else 'UNDER-REPORTED'}")
        for n, entry in enumerate(entries if args.each_entry else [], start=1):
            own = epsilon([entry], entry["delta"], args.discretisation)
            total = epsilon(entries[:n], entry["delta"], args.discretisation)
            ok = entry["epsilon"] >= own and entry["epsilon_cumulative"] >= total
            failures += not ok
            print(f"  entry {entry['id']}: {entry['epsilon']:.6f} >= {own:.6f}, cumulative "
                  f"{entry['epsilon_cumulative']:.6f} >= {total:.6f} "
                  f"{'ok' if ok else 'UNDER-REPORTED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

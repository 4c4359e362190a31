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
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from client_app.agent.site_agent import SiteAgent
from client_app.custody.ckks_keys import ckks_params
from client_app.custody.vault import unlock_vault
from client_app.learning.training import train_local
from common.datasets import load_bundled, partition_indices, select, stratified_split
from common.models import build_model, model_to_vector
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from privacy.accounting import noise_for_target, plan_sampling
from privacy.ckks import add_encrypted, decrypt_vector, encrypt_vector, generate_keys
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

#: Length of the large vector of the encryption micro-benchmark.
LARGE_VECTOR = 100_000

#: Contributors of the large aggregation and of the CKKS error measurement.
MANY_CONTRIBUTORS = 100

#: Repetitions of the local-training timing (median taken).
TRAIN_REPS = 3

#: Seconds after which one ``tessera demo`` run is abandoned.
DEMO_TIMEOUT = 1200.0

Json = dict[str, Any]


# -- helpers ----------------------------------------------------------------------------
def _median_seconds(action: Callable[[], object], reps: int, *, warmup: bool = True) -> float:
    """Median wall seconds of ``reps`` calls of ``action`` (after one untimed call)."""
    if warmup:
        action()
    times: list[float] = []
    for _ in range(max(1, reps)):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _load(study: str) -> StudyPlan:
    """A bundled study by name, or a plan file when ``study`` ends in ``.toml``."""
    return load_plan(Path(study) if study.endswith(".toml") else bundled_plan_path(study))


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


def machine() -> Json:
    """CPU, Python and library versions of this machine."""
    versions: dict[str, str | None] = {}
    for package in ("torch", "tenseal", "opacus", "flwr", "numpy", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    usable: int
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
    }


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


# -- 2. micro-benchmarks ----------------------------------------------------------------
def bench_ckks(plan: StudyPlan, *, sites: int, n_params: int, reps: int) -> Json:
    """Encryption, encrypted aggregation against a numpy sum, decryption and CKKS error."""
    params = ckks_params(plan)
    started = time.perf_counter()
    keys = generate_keys(params)
    keygen_s = time.perf_counter() - started
    secret, evaluation = keys.secret_context, keys.evaluation_context
    rng = np.random.default_rng(plan.seed)

    encrypt: Json = {}
    for label, length in (("model", n_params), ("large", LARGE_VECTOR)):
        values = rng.uniform(-1.0, 1.0, size=length) * 100.0
        chunks = encrypt_vector(secret, values)
        size = sum(len(c) for c in chunks)
        encrypt[label] = {
            "values": length,
            "chunks": len(chunks),
            "ciphertext_bytes": size,
            "vs_fp32": size / (4 * length),
            "encrypt_seconds": _median_seconds(partial(encrypt_vector, secret, values), reps),
            "decrypt_seconds": _median_seconds(
                partial(decrypt_vector, secret, chunks, length=length), reps),
        }

    # Count-weighted, clipped model updates, as sites send them (weights times examples).
    counts = rng.integers(50, 501, size=MANY_CONTRIBUTORS).astype(np.float64)
    weights = np.clip(rng.normal(0.0, 1.0, size=(MANY_CONTRIBUTORS, n_params)), -5.0, 5.0)
    plain = [c * w for c, w in zip(counts, weights, strict=True)]
    sealed = [encrypt_vector(secret, v) for v in plain]

    aggregation: dict[str, Json] = {}
    for n in sorted({sites, MANY_CONTRIBUTORS}):
        he_s = _median_seconds(partial(add_encrypted, evaluation, sealed[:n]), reps)
        np_s = _median_seconds(partial(np.sum, plain[:n], axis=0), max(reps, 50))
        aggregation[str(n)] = {"sites": n, "values": n_params, "add_encrypted_seconds": he_s,
                               "numpy_sum_seconds": np_s, "ratio": he_s / np_s}

    total = add_encrypted(evaluation, sealed)
    decrypted_mean = decrypt_vector(secret, total, length=n_params) / counts.sum()
    plaintext_mean = np.sum(plain, axis=0) / counts.sum()
    return {
        "params": {"poly_modulus_degree": params.poly_modulus_degree,
                   "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes),
                   "global_scale_bits": params.global_scale_bits, "slots": params.slots},
        "keygen_seconds": keygen_s,
        "encrypt": encrypt,
        "aggregation": aggregation,
        "mean_error": {
            "contributors": MANY_CONTRIBUTORS,
            "values": n_params,
            "max_abs_error": float(np.max(np.abs(decrypted_mean - plaintext_mean))),
            "max_abs_mean": float(np.max(np.abs(plaintext_mean))),
        },
    }


def bench_training(plan: StudyPlan, *, sites: int) -> Json:
    """Local training on the first site's train split, with and without DP-SGD."""
    data = select(load_bundled(plan.dataset.name), plan.dataset)
    parts = partition_indices(data.y, sites, seed=plan.seed, scheme=plan.dataset.partition,
                              alpha=plan.dataset.alpha)
    site = data.take(np.asarray(parts[0], dtype=np.int64))
    train_rows, _ = stratified_split(site.y, test_fraction=plan.dataset.test_fraction,
                                     seed=plan.seed)
    train = site.take(train_rows)
    std = train.X.std(axis=0)
    std[std < 1e-9] = 1.0
    X = (train.X - train.X.mean(axis=0)) / std
    y = train.y.astype(np.float64)
    t = plan.training
    sample_rate, steps = plan_sampling(n_train=len(y), batch_size=t.batch_size,
                                       epochs=t.local_epochs)
    noise = noise_for_target(target_epsilon=plan.privacy.target_epsilon,
                             delta=plan.privacy.delta, sample_rate=sample_rate,
                             steps=steps * t.rounds)

    def once(dp: bool, seed: int) -> float:
        model = build_model(plan.model, n_features=X.shape[1], seed=plan.seed)
        outcome = train_local(model, X, y, epochs=t.local_epochs, batch_size=t.batch_size,
                              learning_rate=t.learning_rate, dp=dp, noise_multiplier=noise,
                              max_grad_norm=plan.privacy.max_grad_norm, seed=seed)
        return outcome.seconds

    once(True, 0)  # warm-up: Opacus imports and first-call overheads
    once(False, 0)
    calibrate_s = _median_seconds(
        lambda: noise_for_target.__wrapped__(  # uncached: the calibration a site agent runs
            target_epsilon=plan.privacy.target_epsilon, delta=plan.privacy.delta,
            sample_rate=sample_rate, steps=steps * t.rounds),
        1, warmup=False)
    dp_s = statistics.median(once(True, seed) for seed in range(1, TRAIN_REPS + 1))
    plain_s = statistics.median(once(False, seed) for seed in range(1, TRAIN_REPS + 1))
    return {
        "site_examples": len(y),
        "epochs": t.local_epochs,
        "batch_size": t.batch_size,
        "steps": steps,
        "sample_rate": sample_rate,
        "noise_multiplier": noise,
        "noise_calibration_seconds": calibrate_s,
        "repetitions": TRAIN_REPS,
        "dp_seconds": dp_s,
        "plain_seconds": plain_s,
        "ratio": dp_s / plain_s,
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


# -- output -----------------------------------------------------------------------------
def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_summary(doc: Json) -> None:
    """A compact table of the runs and the micro-benchmark headlines."""
    header = ("config", "status", "s/round", "later", "KB up", "x fp32", "AUC", "acc",
              "base", "gap", "max eps")
    rows = []
    for run in doc["runs"] + doc.get("deployment", []):
        eps = list((run.get("epsilon_per_site") or {}).values())
        rows.append((
            run["config"], str(run.get("status")), _fmt(run.get("mean_round_seconds"), ".2f"),
            _fmt(run.get("mean_later_round_seconds"), ".2f"),
            _fmt((run.get("mean_bytes_up_per_site_round") or 0) / 1024, ".1f")
            if run.get("mean_bytes_up_per_site_round") is not None else "-",
            _fmt(run.get("bytes_up_vs_fp32"), ".0f"), _fmt(run.get("final_auc"), ".3f"),
            _fmt(run.get("final_accuracy"), ".3f"), _fmt(run.get("baseline_auc"), ".3f"),
            _fmt(run.get("auc_gap"), "+.3f"), _fmt(max(eps) if eps else None, ".2f"),
        ))
    micro = doc["micro"]
    enc, agg, train = micro["ckks"]["encrypt"], micro["ckks"]["aggregation"], micro["training"]
    lines = [
        f"encrypt {enc['model']['values']} values: {enc['model']['encrypt_seconds'] * 1e3:.1f} ms"
        f" ({enc['model']['ciphertext_bytes'] / 1024:.0f} KB); {enc['large']['values']} values:"
        f" {enc['large']['encrypt_seconds'] * 1e3:.0f} ms"
        f" ({enc['large']['ciphertext_bytes'] / 1e6:.1f} MB, {enc['large']['vs_fp32']:.1f}x fp32)",
        *(f"aggregate {a['sites']} sites: add_encrypted {a['add_encrypted_seconds'] * 1e3:.2f} ms"
          f" vs numpy {a['numpy_sum_seconds'] * 1e6:.1f} us (x{a['ratio']:.0f})"
          for a in agg.values()),
        f"decrypt model vector {enc['model']['decrypt_seconds'] * 1e3:.2f} ms;"
        f" max |error| of {micro['ckks']['mean_error']['contributors']}-site mean"
        f" {micro['ckks']['mean_error']['max_abs_error']:.1e}",
        f"local training: DP {train['dp_seconds']:.3f} s vs plain {train['plain_seconds']:.3f} s"
        f" (x{train['ratio']:.1f}); DP noise calibration"
        f" {train['noise_calibration_seconds']:.2f} s once per study and site",
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("  ".join(header))
        for row in rows:
            print("  ".join(row))
        print("\n".join(lines))
        return
    table = Table(title=f"Tessera round benchmark: {doc['study']['name']}, "
                        f"{doc['study']['sites']} sites, {doc['study']['rounds']} rounds")
    for column in header:
        table.add_column(column, justify="left" if column in ("config", "status") else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for line in lines:
        console.print(line, highlight=False)


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

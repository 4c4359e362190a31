"""Measure Tessera's cost figures in one run and write them as one JSON file.

Usage: python scripts/bench.py --out FILE [--quick] [--dp-only]

Keys (numbers measured in this run; ``null`` with a ``notes`` entry for what is not built):

- ``he_upload_ratio_100k``: bytes of one encrypted 100,000-value update over its float32
  bytes, with the parameters :func:`privacy.he_params.choose_params` picks for the reference
  workload below (``he_upload_ratio_100k_bundled``: with the bundled plans' ``[he]``);
- ``he_update_bytes_small``: bytes of one encrypted 31-value update (the breast-cancer
  logistic regression), same parameters (and ``_bundled``);
- ``he_server_sum_ratio_100x1m``: seconds to sum 100 encrypted 1,000,000-value updates,
  streamed one at a time (:func:`privacy.ckks.add_encrypted`, with the worker processes it
  starts by itself: ``he_server_sum_workers``), over the seconds numpy takes to sum the same
  100 float64 vectors streamed the same way (``_one_process``: the sum without workers;
  ``he_server_sum_loadavg``: the machine's load averages just after);
- ``dp_epoch_ratio_logreg`` / ``dp_epoch_ratio_mlp``: one DP-SGD epoch (fast engine) over one
  plain epoch, 20,000 rows x 30 features, batch 256, one torch thread, shortest of several
  runs taken in turns (``*_opacus``: the Opacus engine; ``dp_epoch_cpu_ratio_*``: the same
  in process CPU time, steadier on a loaded machine; ``dp_epoch_ratio_by_rows``: the fast
  engine at 10,000 and 50,000 rows);
- ``noise_calibration_seconds``: an uncached noise calibration of the breast-cancer plan at a
  150-row site, every accounting cache emptied (median of three, after a first one;
  ``_first_seconds``: that first one, which also pays one-time warm-up);
- ``sim_seconds_per_round_100`` / ``_1000``: mean seconds of a round of ``tessera simulate``
  (breast cancer, DP and HE on, sums attested by 3 sites, 40 rows per site, the agents spread
  over one worker process per CPU: ``sim_workers``; two rounds, one with ``--quick``), with
  its bytes (``sim_100`` / ``sim_1000``); 1000 sites only without ``--quick``;
- ``digits_accuracy_eps3``: the digits study (CNN, DP-SGD at epsilon 3, HE, three sites, the
  plan's rounds; two with ``--quick``) run in process; accuracy of the released model on the
  pooled held-out rows;
- ``digits_dp_epoch_ratio``: one DP-SGD epoch (fast engine: vmap per-example gradients) of
  the digits CNN over one plain epoch, 1,437 rows, batch 256 (``_opacus``: the Opacus engine);
- ``auc_gap_eps3_<study>``: the centralised baseline's AUC minus the released model's exact
  AUC, both on the pooled held-out rows, for each bundled tabular study at epsilon 3 with the
  plan as bundled (mean over three public seeds; one with ``--quick``); ``utility_eps3``
  holds the rows behind it (``scripts/bench_utility.py`` measures epsilon 1, 3 and 8).

Reference HE workload: 100 contributors, each encrypting count-weighted updates (counts up to
500, values clipped to 10, so magnitudes up to 5,000), sums exact to 1e-4 absolute (a mean
over 100 sites of 50 rows or more exact to 2e-8). ``--quick`` takes fewer repetitions and
finishes in a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

REFERENCE = {"contributors": 100, "max_abs": 5000.0, "precision": 1e-4}


def _median_seconds(run: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def he_figures(*, quick: bool) -> dict[str, object]:
    """Upload bytes and the streamed encrypted sum against numpy."""
    from common.plan import bundled_plan_path, load_plan
    from privacy.ckks import CkksParams, add_encrypted, encrypt_vector, generate_keys
    from privacy.he_params import choose_params
    from privacy.he_sum import auto_workers

    rng = np.random.default_rng(0)
    out: dict[str, object] = {}
    plan = load_plan(bundled_plan_path("breast_cancer"))
    bundled = CkksParams(poly_modulus_degree=plan.he.poly_modulus_degree,
                         coeff_mod_bit_sizes=tuple(plan.he.coeff_mod_bit_sizes),
                         global_scale_bits=plan.he.global_scale_bits)
    for length, key in ((100_000, "100k"), (31, "small")):
        chosen = choose_params(values=length, **REFERENCE)  # type: ignore[arg-type]
        for params, suffix in ((chosen.params, ""), (bundled, "_bundled")):
            secret = generate_keys(params).secret_context
            values = np.clip(rng.normal(0, 6, size=length), -10, 10) * 500
            size = sum(len(c) for c in encrypt_vector(secret, values))
            if key == "100k":
                out[f"he_upload_ratio_100k{suffix}"] = size / (4 * length)
            else:
                out[f"he_update_bytes_small{suffix}"] = size
            out[f"he_params_{key}{suffix}"] = {
                "poly_modulus_degree": params.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes),
                "global_scale_bits": params.global_scale_bits}

    # The server sum: 100 contributions of 1M values, streamed; a few distinct encryptions
    # are re-read as fresh bytes (parsing and adding cost the same as distinct ones).
    length, sites, distinct = 1_000_000, 100, 3
    params = choose_params(values=length, **REFERENCE).params  # type: ignore[arg-type]
    keys = generate_keys(params)
    plain = [np.clip(rng.normal(0, 6, size=length), -10, 10) * 500 for _ in range(distinct)]
    sealed = [encrypt_vector(keys.secret_context, v) for v in plain]

    def encrypted() -> Iterator[list[bytes]]:
        for i in range(sites):
            yield [bytes(bytearray(c)) for c in sealed[i % distinct]]

    def numpy_sum() -> np.ndarray:
        total = np.zeros(length)
        for i in range(sites):
            total += np.array(plain[i % distinct])  # a fresh copy, as read from the wire
        return total

    reps = 1 if quick else 3
    he_s = _median_seconds(lambda: add_encrypted(keys.evaluation_context, encrypted()), reps)
    np_s = _median_seconds(numpy_sum, reps)
    out["he_server_sum_seconds_100x1m"] = he_s
    out["numpy_sum_seconds_100x1m"] = np_s
    out["he_server_sum_ratio_100x1m"] = he_s / np_s
    # What the worker processes bring: the same sum in this process alone, and how loaded the
    # machine was (other processes take the CPUs the workers would use).
    out["he_server_sum_workers"] = auto_workers(len(sealed[0]))
    one_s = _median_seconds(
        lambda: add_encrypted(keys.evaluation_context, encrypted(), workers=0), reps)
    out["he_server_sum_ratio_100x1m_one_process"] = one_s / np_s
    out["he_server_sum_loadavg"] = list(os.getloadavg())
    return out


DP_KINDS: tuple[Literal["logreg", "mlp"], ...] = ("logreg", "mlp")


def dp_figures(*, quick: bool) -> dict[str, object]:
    """One DP-SGD epoch over one plain epoch, per engine and model (and, fast engine only,
    at 10,000 and 50,000 rows)."""
    import torch

    out: dict[str, object] = {}
    reps = 5 if quick else 15
    # One thread: on a small model torch's thread pool only adds contention, and the
    # shortest of several runs is the figure least disturbed by other load on the machine.
    torch.set_num_threads(1)
    for kind in DP_KINDS:
        wall, cpu = _dp_epoch_seconds(kind, rows=20_000, modes=("plain", "fast", "opacus"),
                                      reps=reps)
        out[f"dp_epoch_ratio_{kind}"] = wall["fast"] / wall["plain"]
        out[f"dp_epoch_ratio_{kind}_opacus"] = wall["opacus"] / wall["plain"]
        out[f"dp_epoch_cpu_ratio_{kind}"] = cpu["fast"] / cpu["plain"]
        out[f"dp_epoch_seconds_{kind}"] = wall
    by_rows: dict[str, dict[str, float]] = {}
    for rows in (10_000, 50_000):
        for kind in DP_KINDS:
            wall, cpu = _dp_epoch_seconds(kind, rows=rows, modes=("plain", "fast"), reps=reps)
            by_rows[f"{kind}_{rows}"] = {"ratio": wall["fast"] / wall["plain"],
                                         "cpu_ratio": cpu["fast"] / cpu["plain"],
                                         "plain_seconds": wall["plain"],
                                         "fast_seconds": wall["fast"]}
    out["dp_epoch_ratio_by_rows"] = by_rows
    return out


def _dp_epoch_seconds(kind: Literal["logreg", "mlp"], *, rows: int, modes: tuple[str, ...],
                      reps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Shortest wall and process-CPU seconds of one epoch per mode, 30 features, batch 256.

    The modes take turns within each repetition, so that load on the machine falls on all
    of them alike; CPU time (one torch thread) is the less disturbed of the two under load.
    """
    from client_app.learning.training import train_local
    from common.models import build_model
    from common.plan import ModelSpec

    rng = np.random.default_rng(1)
    features = 30
    X = rng.normal(size=(rows, features))
    y = (X @ rng.normal(size=features) + rng.normal(size=rows) > 0).astype(np.float64)
    wall: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    for rep in range(reps + 1):  # the first run warms up imports and caches
        for mode in modes:
            model = build_model(ModelSpec(kind=kind), n_features=features, seed=0)
            dp: dict[str, object] = {"dp": False, "noise_multiplier": 1.0, "max_grad_norm": 1.0}
            if mode != "plain":
                dp.update(dp=True, engine=mode)
            started = time.process_time()
            outcome = train_local(model, X, y, epochs=1, batch_size=256, learning_rate=0.1,
                                  seed=0, **dp)  # type: ignore[arg-type]
            if rep:
                cpu[mode].append(time.process_time() - started)
                wall[mode].append(outcome.seconds)
    return ({mode: min(times) for mode, times in wall.items()},
            {mode: min(times) for mode, times in cpu.items()})


def calibration_figure() -> dict[str, object]:
    """Uncached noise calibrations for the breast-cancer plan at a 150-row site.

    ``noise_calibration_seconds`` is the median of three calibrations with every accounting
    cache emptied, in a process that has calibrated once (what a long-running site agent pays
    for a new study); ``noise_calibration_first_seconds`` is the first one, which also pays
    one-time warm-up (lazy library set-up, first use of numpy and scipy routines).
    """
    from common.plan import bundled_plan_path, load_plan
    from privacy.accounting import noise_for_target, plan_sampling
    from privacy.release_plan import planned_releases

    plan = load_plan(bundled_plan_path("breast_cancer"))
    sample_rate, steps = plan_sampling(n_train=150, batch_size=plan.training.batch_size,
                                       epochs=plan.training.local_epochs)
    from privacy import pld, rdp

    seconds = []
    for _ in range(4):
        # Every cache on the way is emptied: each run computes every distribution anew.
        for cached in (noise_for_target, pld._epsilon, pld._distribution, rdp._rdp_per_step):
            cached.cache_clear()
        started = time.perf_counter()
        noise_for_target(target_epsilon=plan.privacy.target_epsilon, delta=plan.privacy.delta,
                         sample_rate=sample_rate, steps=steps * plan.training.rounds,
                         extra=planned_releases(plan))
        seconds.append(time.perf_counter() - started)
    return {"noise_calibration_seconds": statistics.median(seconds[1:]),
            "noise_calibration_first_seconds": seconds[0]}


#: Sites that attest each set in the simulation figures ([federation] attesters).
SIM_ATTESTERS = 3
#: Most worker processes the simulation figures spread the virtual sites over.
SIM_MAX_WORKERS = 8


def sim_workers() -> int:
    """Worker processes for the simulation figures: one per CPU this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (platforms without CPU affinity)
        cpus = os.cpu_count() or 1
    return max(1, min(SIM_MAX_WORKERS, cpus))


def simulation_figures(*, quick: bool, workdir: Path) -> dict[str, object]:
    """Seconds per round of ``tessera simulate`` at 100 (and, in full, 1000) sites."""
    import logging

    from common.plan import bundled_plan_path, load_plan, override
    from tessera.simulate import simulate

    logging.getLogger("flwr").setLevel(logging.WARNING)
    out: dict[str, object] = {"sim_workers": sim_workers()}
    for sites in (100,) if quick else (100, 1000):
        plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1 if quick else 2,
                        attesters=SIM_ATTESTERS)
        result = simulate(plan, sites=sites, workdir=workdir / f"sim-{sites}",
                          workers=sim_workers())
        out[f"sim_seconds_per_round_{sites}"] = (
            result.seconds_per_round if result.status == "completed" else None)
        out[f"sim_{sites}"] = result.to_json()
    return out


def utility_figures(*, quick: bool) -> dict[str, object]:
    """The released model's AUC gap to the centralised baseline at epsilon 3, per bundled
    study, mean over seeds (``scripts/bench_utility.py`` has the whole table)."""
    from bench_utility import measure  # this script's folder is first on the import path

    found = measure(["breast_cancer", "diabetes"], [3.0], 1 if quick else 3)
    return {key: found[key] for key in ("auc_gap_eps3_breast_cancer", "auc_gap_eps3_diabetes")
            } | {"utility_eps3": found["table"]}


def digits_figures(*, quick: bool, workdir: Path) -> dict[str, object]:
    """The digits study's accuracy at epsilon 3, and its DP-SGD epoch over a plain one."""
    import logging

    import torch

    from client_app.agent.site_agent import SiteAgent
    from client_app.custody.vault import unlock_vault
    from client_app.learning.training import train_local
    from common.datasets import load_bundled
    from common.models import build_model
    from common.plan import bundled_plan_path, load_plan, override
    from server.coordinator import run_study
    from tessera import local_federation
    from tessera.baseline import released_model_check
    from tessera.inprocess import InProcessGrid

    logging.getLogger("flwr").setLevel(logging.WARNING)
    plan = load_plan(bundled_plan_path("digits"))
    if quick:
        plan = override(plan, rounds=2)
    data = load_bundled("digits")
    X = (data.X[:1437] - 8.0) / 8.0
    y = data.y[:1437].astype(np.float64)
    torch.set_num_threads(1)
    seconds: dict[str, float] = {}
    for mode in ("plain", "fast", "opacus"):
        times = []
        for _ in range(2 if quick else 4):  # the first run warms up imports and caches
            model = build_model(plan.model, n_features=64, seed=0)
            dp: dict[str, object] = {"dp": mode != "plain", "noise_multiplier": 1.0,
                                     "max_grad_norm": 1.0}
            if mode != "plain":
                dp["engine"] = mode
            outcome = train_local(model, X, y, epochs=1, batch_size=256, learning_rate=0.1,
                                  seed=0, **dp)  # type: ignore[arg-type]
            times.append(outcome.seconds)
        seconds[mode] = min(times[1:])
    fed = local_federation.build(workdir / "digits", plan, sites=3, ceilings={},
                                 passphrase="benchmark digits study")
    agents = [SiteAgent(unlock_vault(site, "benchmark digits study")) for site in fed.sites]
    started = time.perf_counter()
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="bench", expected_sites=3, custodian=fed.custodian)
    check = released_model_check(fed, result) or {}
    return {
        "digits_dp_epoch_ratio": seconds["fast"] / seconds["plain"],
        "digits_dp_epoch_ratio_opacus": seconds["opacus"] / seconds["plain"],
        "digits_dp_epoch_seconds": seconds,
        "digits_accuracy_eps3": check.get("accuracy"),
        "digits_auc_eps3": check.get("auc"),
        "digits_study": {"status": result["status"], "rounds": len(result.get("rounds", [])),
                         "seconds": time.perf_counter() - started,
                         "epsilon_spent": [s.get("epsilon_spent") for s in result["sites"]],
                         "bytes_up_per_round": [sum(r["bytes_up"].values())
                                                for r in result.get("rounds", [])]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--dp-only", action="store_true",
                        help="only the DP-SGD epoch figures and the noise calibration")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    result: dict[str, object] = {"quick": args.quick, "python": platform.python_version(),
                                 "machine": platform.machine(), "reference_he": REFERENCE}
    result.update(dp_figures(quick=args.quick))
    result.update(calibration_figure())
    if args.dp_only:
        return _write(args.out, result, started)
    result.update(he_figures(quick=args.quick))
    # Virtual sites share one disk: a memory file system, where there is one, keeps their
    # store's fsyncs from measuring the disk instead of Tessera.
    memory = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=memory if memory.is_dir() else None) as scratch:
        result.update(digits_figures(quick=args.quick, workdir=Path(scratch)))
        result.update(simulation_figures(quick=args.quick, workdir=Path(scratch)))
    result.update(utility_figures(quick=args.quick))
    notes: dict[str, str] = {}
    if args.quick:
        notes["sim_seconds_per_round_1000"] = "measured only without --quick"
        result["sim_seconds_per_round_1000"] = None
    result["notes"] = notes
    return _write(args.out, result, started)


def _write(out: Path, result: dict[str, object], started: float) -> int:
    result["seconds"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

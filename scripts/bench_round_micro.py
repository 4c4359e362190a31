"""Micro-benchmarks of the round benchmark (``scripts/bench_round.py``): the pieces a round
is made of.

CKKS encryption and decryption of a model-sized vector and of 100,000 values, encrypted
aggregation of N site vectors against a plaintext numpy sum, the CKKS error of a
100-contributor mean, DP noise calibration, and local training with and without DP-SGD.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from client_app.custody.ckks_keys import ckks_params
from client_app.learning.training import train_local
from common.datasets import load_bundled, partition_indices, select, stratified_split
from common.models import build_model
from common.plan import StudyPlan
from privacy.accounting import noise_for_target, plan_sampling
from privacy.ckks import add_encrypted, decrypt_vector, encrypt_vector, generate_keys

#: Length of the large vector of the encryption micro-benchmark.
LARGE_VECTOR = 100_000

#: Contributors of the large aggregation and of the CKKS error measurement.
MANY_CONTRIBUTORS = 100

#: Repetitions of the local-training timing (median taken).
TRAIN_REPS = 3

Json = dict[str, Any]


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

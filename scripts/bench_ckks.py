"""Developer benchmark of the CKKS codec: ciphertext size and timings per vector length.

Usage: python scripts/bench_ckks.py [--lengths 1000 100000] [--contributors 10]

For each length it encrypts one clipped, count-weighted update per contributor, adds them
with the evaluation context and decrypts the sum, and prints bytes, seconds and the error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from privacy.ckks import (
    CkksParams,
    add_encrypted,
    check_headroom,
    decrypt_vector,
    encrypt_vector,
    generate_keys,
)


def bench(length: int, contributors: int, params: CkksParams) -> dict[str, float]:
    """Measure one round of encrypted weighted summing for vectors of ``length`` values."""
    rng = np.random.default_rng(length)
    keys = generate_keys(params)
    counts = rng.integers(50, 501, size=contributors)
    updates = np.clip(rng.normal(0.0, 6.0, size=(contributors, length)), -10, 10)
    check_headroom(params, max_abs=float(counts.max()) * 10, contributors=contributors)

    started = time.perf_counter()
    uploads = [
        encrypt_vector(keys.secret_context, c * u) for c, u in zip(counts, updates, strict=True)
    ]
    encrypt_s = (time.perf_counter() - started) / contributors

    started = time.perf_counter()
    total = add_encrypted(keys.evaluation_context, uploads)
    add_s = time.perf_counter() - started

    started = time.perf_counter()
    mean = decrypt_vector(keys.secret_context, total, length=length) / counts.sum()
    decrypt_s = time.perf_counter() - started

    expected = (counts[:, None] * updates).sum(axis=0) / counts.sum()
    upload_bytes = sum(len(chunk) for chunk in uploads[0])
    return {
        "values": length,
        "chunks": len(uploads[0]),
        "upload_bytes": upload_bytes,
        "x_float32": upload_bytes / (4 * length),
        "encrypt_s": encrypt_s,
        "add_s": add_s,
        "decrypt_s": decrypt_s,
        "max_error": float(np.max(np.abs(mean - expected))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--contributors", type=int, default=10)
    args = parser.parse_args()
    params = CkksParams()
    print(
        f"N={params.poly_modulus_degree} coeff={list(params.coeff_mod_bit_sizes)} "
        f"scale=2**{params.global_scale_bits}, {args.contributors} contributors"
    )
    for length in args.lengths:
        row = bench(length, args.contributors, params)
        print(
            f"{row['values']:>8} values  {row['chunks']:>3} chunks  "
            f"{row['upload_bytes'] / 1e6:8.3f} MB ({row['x_float32']:6.1f}x fp32)  "
            f"encrypt {row['encrypt_s'] * 1e3:7.1f} ms  "
            f"add {row['add_s'] * 1e3:7.1f} ms  decrypt {row['decrypt_s'] * 1e3:7.1f} ms  "
            f"max error {row['max_error']:.1e}"
        )


if __name__ == "__main__":
    main()

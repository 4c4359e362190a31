"""What verified decryption costs a site: bytes forwarded and seconds to verify, sum and
decrypt one step's contributions, as a function of the number of sites and the model size.

Usage::

    python scripts/bench_verification.py [--out bench-out/bench_verification.json]
                                         [--sites 2,3,5,10,20] [--sizes 31,1000,10000,100000]

For each (sites, values) pair it builds real signed CKKS contributions at the bundled plans'
parameters (ring 8192, [60, 50, 60], scale 2**50), then times
``client_app.agent.contributions.SumVerifier.open`` (every check: layout, digest, Ed25519
signature, then the homomorphic sum and one decryption) and reports the bytes a task carries
for the set (serialised ``ContributionSet``). A set is forwarded once per site per step and
named by its digests afterwards. Run by hand, not by the tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from client_app.agent.contributions import Expected, SumVerifier
from client_app.agent.envelopes import seal_vector
from client_app.agent.signing import sign_envelope
from common.layout import TensorSlot
from common.plan import bundled_plan_path, load_plan, override
from privacy.ckks import CkksParams, generate_keys
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2

PLAN_HASH = "a" * 64


def _measure(sites: int, values: int, params: CkksParams, keys, reps: int) -> dict:
    plan = override(load_plan(bundled_plan_path("breast_cancer")), min_sites=min(sites, 2))
    layout = [TensorSlot(name="w", shape=(values,), offset=0, length=values)]
    signers, envs = {}, []
    rng = np.random.default_rng(sites * 7919 + values)
    for i in range(sites):
        name, key = f"site-{i}", SigningKey.generate()
        signers[name] = key.public_hex
        env = seal_vector(kind=agent_pb2.ENVELOPE_WEIGHTS, plan_hash=PLAN_HASH, run_id="bench",
                          round_=1, site=name, example_count=100,
                          values=rng.normal(0, 10, values), layout=layout,
                          secret_context=keys.secret_context)
        sign_envelope(env, key)
        envs.append(env)
    cset = agent_pb2.ContributionSet(kind=agent_pb2.ENVELOPE_WEIGHTS, round=1)
    cset.envelopes.extend(envs)
    cset.digests.extend(e.digest for e in envs)
    expect = Expected(kind=agent_pb2.ENVELOPE_WEIGHTS, round=1, run_id="bench",
                      plan_hash=PLAN_HASH, layout=tuple(layout))
    times = []
    for _ in range(reps):
        verifier = SumVerifier()
        started = time.perf_counter()
        verifier.open(cset, expect, plan=plan, signers=signers, secret=keys.secret_context)
        times.append(time.perf_counter() - started)
    reference = agent_pb2.ContributionSet(kind=cset.kind, round=1)
    reference.digests.extend(cset.digests)
    return {"sites": sites, "values": values, "seconds": statistics.median(times),
            "bytes_full": len(cset.SerializeToString()),
            "bytes_by_reference": len(reference.SerializeToString()),
            "bytes_per_contribution": len(envs[0].SerializeToString())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/bench_verification.json"))
    parser.add_argument("--sites", default="2,3,5,10,20")
    parser.add_argument("--sizes", default="31,1000,10000,100000")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    params = CkksParams(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 50, 60),
                        global_scale_bits=50)
    keys = generate_keys(params)
    rows = []
    for values in (int(v) for v in args.sizes.split(",")):
        for sites in (int(s) for s in args.sites.split(",")):
            row = _measure(sites, values, params, keys, args.reps)
            rows.append(row)
            print(f"{sites:3d} sites x {values:7d} values: {row['seconds']*1000:8.1f} ms, "
                  f"{row['bytes_full'] / 1e6:8.2f} MB forwarded once, "
                  f"{row['bytes_by_reference']} B by reference", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
        "params": {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 50, 60],
                   "global_scale_bits": 50}, "rows": rows}, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

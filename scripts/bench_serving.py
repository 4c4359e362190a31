"""Developer benchmark of serving: torch eager vs ONNX Runtime fp32 vs int8, and the service.

Usage: python scripts/bench_serving.py [--out bench.json] [--models logreg mlp]
       [--clients 8] [--requests 200] [--repeats 2000]

For each zoo model (30 features, the bundled breast-cancer shape; random weights spread so
scores cover both classes) it measures the p50/p99 latency of scoring one batch of raw rows
at batch 1 and 256 with

* torch eager: standardise, then :func:`common.models.predict_scores` (what
  ``tessera model predict`` runs);
* ONNX Runtime fp32 and int8 (one intra-op thread), graphs from :mod:`server.onnx_export`,

the int8 graph's label agreement and max |score difference| with torch on 20,000 synthetic
rows, and the throughput of the prediction service over loopback: the model registered in a
temporary coordinator folder, served by uvicorn in a child process, ``--clients`` concurrent
HTTP clients each sending ``--requests`` requests of one row. Prints (and writes) JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from common.models import build_model, model_to_vector, predict_scores
from common.plan import ModelSpec
from common.roles import Role
from server.onnx_export import export_onnx, onnx_scores, onnx_session, synthetic_rows
from server.predict import load_model
from server.registry import ModelRegistry
from serving.tokens import TokenStore

FEATURES = 30
SPECS = {"logreg": ModelSpec(kind="logreg"), "mlp": ModelSpec(kind="mlp", hidden=64, groups=8)}
SERVER = """
import sys, uvicorn
from client_app.custody.caller import load_access_policy
from serving.app import create_app
from serving.catalog import Catalog
from serving.service import PredictionService
from serving.tokens import TokenStore
folder, port = sys.argv[1], int(sys.argv[2])
service = PredictionService(Catalog(folder), TokenStore(folder), load_access_policy())
uvicorn.run(create_app(service), host="127.0.0.1", port=port, log_level="warning",
            access_log=False)
"""


def model_doc(kind: str, *, seed: int = 0) -> dict[str, Any]:
    """A model document of the breast-cancer shape with spread-out random weights."""
    spec = SPECS[kind]
    model = build_model(spec, n_features=FEATURES, seed=seed)
    values, layout = model_to_vector(model)
    values = np.random.default_rng(seed).normal(0.0, 0.3, values.size)
    rng = np.random.default_rng(seed + 1)
    return {
        "format": "tessera-model/1", "study": f"bench_{kind}", "plan_hash": "b" * 64,
        "model": spec.model_dump(mode="json"),
        "features": [f"f{i:02d}" for i in range(FEATURES)], "label": "y",
        "layout": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                    "length": s.length} for s in layout],
        "values": values.tolist(), "mean": rng.normal(10, 5, FEATURES).tolist(),
        "std": rng.uniform(0.5, 3.0, FEATURES).tolist(),
    }


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _time(fn: Any, repeats: int) -> dict[str, float]:
    for _ in range(min(50, repeats)):
        fn()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return _percentiles(out)


def latency(doc: dict[str, Any], repeats: int) -> dict[str, Any]:
    model, _, mean, std = load_model(doc)
    fp32 = onnx_session(export_onnx(doc).data)
    int8 = onnx_session(export_onnx(doc, quantize="int8").data)
    result: dict[str, Any] = {}
    for batch in (1, 256):
        X = synthetic_rows(doc, rows=batch, seed=batch)
        runs = {
            "torch_eager": _time(lambda X=X: predict_scores(model, (X - mean) / std), repeats),
            "ort_fp32": _time(lambda X=X: onnx_scores(fp32, X), repeats),
            "ort_int8": _time(lambda X=X: onnx_scores(int8, X), repeats),
        }
        base = runs["torch_eager"]["p50_ms"]
        for name in ("ort_fp32", "ort_int8"):
            runs[name]["speedup_p50_vs_torch"] = base / runs[name]["p50_ms"]
        result[f"batch_{batch}"] = runs
    X = synthetic_rows(doc, rows=20_000, seed=99)
    reference = predict_scores(model, (X - mean) / std)
    quantised = onnx_scores(int8, X)
    result["int8_agreement"] = {
        "rows": int(X.shape[0]),
        "label_agreement": float(np.mean((quantised >= 0.5) == (reference >= 0.5))),
        "max_abs_score_diff": float(np.max(np.abs(quantised - reference))),
        "fp32_max_abs_score_diff": float(np.max(np.abs(onnx_scores(fp32, X) - reference))),
    }
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def throughput(doc: dict[str, Any], *, clients: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        with ModelRegistry.open(Path(folder)) as registry:
            registry.register(study=doc["study"], plan_hash=doc["plan_hash"], rounds=1,
                              model_bytes=json.dumps(doc).encode(), metrics={},
                              epsilon_per_site={}, lineage={})
        with TokenStore(Path(folder)) as tokens:
            token = tokens.create(name="bench", role=Role.SITE_OPERATOR).token
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, folder, str(port)])
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the service did not start")
            row = dict(zip(doc["features"], synthetic_rows(doc, rows=1)[0].tolist(),
                           strict=True))
            path = f"/v1/models/{doc['study']}/predict"
            latencies: list[float] = []
            failures = [0]
            lock = threading.Lock()

            def client(index: int) -> None:
                mine = []
                with httpx.Client(base_url=url, headers={
                        "Authorization": f"Bearer {token}"}) as http:
                    for i in range(requests):
                        started = time.perf_counter()
                        response = http.post(path, json={"rows": [row]},
                                             headers={"X-Request-Key": f"{index}-{i}"})
                        mine.append(time.perf_counter() - started)
                        if response.status_code != 200:
                            with lock:
                                failures[0] += 1
                with lock:
                    latencies.extend(mine)

            started = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"clients": clients, "requests": clients * requests, "failures": failures[0],
            "requests_per_s": clients * requests / elapsed, **_percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["logreg", "mlp"], choices=list(SPECS))
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": {"python": platform.python_version(),
                                          "cpus": os.cpu_count()}}
    for kind in args.models:
        doc = model_doc(kind)
        report[kind] = {"latency": latency(doc, args.repeats),
                        "service": throughput(doc, clients=args.clients,
                                              requests=args.requests)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

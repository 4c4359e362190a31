"""The serving benchmark runs end to end (a real service process) and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_serving.py"


def test_bench_serving_reports_latency_agreement_and_throughput(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(SCRIPT), "--models", "logreg", "--repeats", "20",
                    "--clients", "2", "--requests", "5", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    report = json.loads(out.read_text())["logreg"]
    for batch in ("batch_1", "batch_256"):
        assert set(report["latency"][batch]) == {"torch_eager", "ort_fp32", "ort_int8"}
        assert all(v["p50_ms"] > 0 for v in report["latency"][batch].values())
    agreement = report["latency"]["int8_agreement"]
    assert agreement["label_agreement"] >= 0.995
    assert agreement["fp32_max_abs_score_diff"] <= 1e-5
    service = report["service"]
    assert service["requests"] == 10 and service["failures"] == 0
    assert service["requests_per_s"] > 0

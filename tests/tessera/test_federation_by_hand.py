"""The README's "A federation by hand", run as written: three sites in folders of their own, a
coordinator started with ``tessera coordinator start``, a study submitted, followed and
reported, a registered model and its card, and no process left behind.

The only change to the README's block is the SuperLink port (a free one instead of 9092, so
the test never meets another SuperLink on this machine).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from common.plan import load_plan
from common.processes import free_port
from server.predict import predict_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
_BLOCK = re.compile(r"## A federation by hand\n.*?```bash\n(.*?)```", re.DOTALL)


def readme_block() -> str:
    """The bash block of the README's "A federation by hand" section."""
    found = _BLOCK.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert found is not None, "README has no 'A federation by hand' bash block"
    return found.group(1)


def _ours(folder: Path) -> list[int]:
    """Live processes whose command line names ``folder``."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if str(folder) in cmdline and state != "Z" and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def _exact_auc(work: Path, report: dict) -> float:
    """The registered model's exact AUC on every row of the three sites' CSVs."""
    plan = load_plan(work / "plan.toml")
    doc = json.loads((work / "coord" / report["model"]["path"]).read_text(encoding="utf-8"))
    scores, labels = [], []
    for site in "abc":
        path = work / "data" / f"{site}.csv"
        _, site_scores, _ = predict_file(doc, path.read_bytes(), source_name=path.name)
        with path.open(encoding="utf-8", newline="") as handle:
            labels += [int(float(row[plan.dataset.label])) for row in csv.DictReader(handle)]
        scores += list(site_scores)
    return float(roc_auc_score(labels, scores))


def test_the_readme_federation_by_hand_runs_as_written(tmp_path: Path) -> None:
    script = readme_block()
    assert "--port 9092" in script
    script = script.replace("--port 9092", f"--port {free_port()}")
    work = tmp_path / "by-hand"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("TESSERA_KIT", "TESSERA_SITE_PASSPHRASE", "TESSERA_POLICY")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1500, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-6000:]
        # The run's id, as submit printed it (a line of digits), names the reported run.
        run_ids = re.findall(r"^(\d{6,})$", done.stdout, re.MULTILINE)
        assert len(run_ids) == 1, done.stdout[-3000:]
        report = json.loads((work / "report.json").read_text(encoding="utf-8"))
        assert report["status"] == "completed", report.get("error")
        assert report["engine"]["run_id"] == run_ids[0]
        assert report["engine"]["tls"] and report["engine"]["node_auth"]
        assert [r["round"] for r in report["rounds"]] == [1, 2]
        assert all(sorted(r["participating_sites"]) == ["a", "b", "c"]
                   for r in report["rounds"])
        assert report["privacy"]["he"] and report["privacy"]["he_params"]["key_custodian"] == "a"
        # Under DP the reported AUC comes from noisy histograms (a few hundred held-out rows
        # here), so the model itself is scored exactly on the sites' rows, as only a test
        # holding every site's CSV can, and the report must carry its noise.
        assert _exact_auc(work, report) > 0.9
        assert 0.0 <= report["final"]["auc"] <= 1.0
        assert report["final"]["dp_noise"]["cell_std"] > 0
        assert report["model"]["version"] == 1
        coord = work / "coord"
        assert (coord / report["model"]["path"]).is_file()
        assert (coord / "cards" / "breast_cancer-v1" / "card.md").is_file()
        assert "run " + run_ids[0] in output and "completed" in output
        assert "coordinator stopped" in output
        assert output.count("node stopped (pid") == 3
        assert _ours(work) == []
    finally:
        for pid in _ours(work):  # only after a failure: stop what the block left running
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

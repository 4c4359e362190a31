"""scripts/recompute_epsilon.py: an independent accountant recomputes the ledger's epsilons
from ``tessera site budget --json``; the ledger never reports less than it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from client_app.custody.vault import create_vault
from client_app.governance.budget import ledger_report
from client_app.governance.ledger import keyed_store
from client_app.store.folder import init_site_dir
from privacy.mechanisms import DpStep, GaussianRelease

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "recompute_epsilon.py"
DOC = ROOT / "docs" / "privacy-ledger.md"


@pytest.fixture(scope="module")
def ledger_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The budget JSON of a site with DP-SGD rounds and Gaussian releases on two datasets,
    one at a lowered delta since."""
    root = tmp_path_factory.mktemp("site")
    vault = create_vault(init_site_dir(root / "h1", name="h1"), "recompute passphrase")
    releases = [
        ("icu", DpStep(1.2, 0.05, 40), "dp_sgd"), ("icu", GaussianRelease(6.0, 2), "statistics"),
        ("icu", DpStep(1.2, 0.05, 40), "dp_sgd"), ("ward", DpStep(0.9, 1.0, 3), "dp_sgd"),
        ("icu", GaussianRelease(15.0, 8), "evaluation_counts"),
        ("ward", DpStep(2.0, 0.2, 25), "dp_sgd"),
    ]
    with keyed_store(vault) as store:
        store.set_delta(1e-4, actor="ops")
        for number, (dataset, mechanism, kind) in enumerate(releases):
            if number == 4:
                store.set_delta(1e-5, actor="ops")
            store.record_release(mechanism=mechanism, kind=kind, plan_hash="a" * 64,
                                 study="s", run_id="r", round=number, dataset_id=dataset,
                                 dataset_version="v1")
    path = root / "ledger.json"
    path.write_text(json.dumps(ledger_report(vault.site, vault=vault).to_json()), encoding="utf-8")
    return path


def _run(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False)


def test_reported_epsilon_is_never_below_the_independent_recomputation(
        ledger_json: Path) -> None:
    result = _run(ledger_json, "--each-entry")
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.findall(r"^(\w+): reported ([\d.]+), recomputed ([\d.]+)", result.stdout,
                       re.MULTILINE)
    lines = {name: (float(a), float(b)) for name, a, b in found}
    assert set(lines) == {"icu", "ward"}
    for reported, recomputed in lines.values():
        assert recomputed <= reported <= recomputed * 1.02 + 1e-3  # pessimistic, not loose
    assert result.stdout.count("ok") == 2 + 6 and "UNDER-REPORTED" not in result.stdout


def test_an_under_reported_figure_is_flagged(ledger_json: Path, tmp_path: Path) -> None:
    doc = json.loads(ledger_json.read_text(encoding="utf-8"))
    doc["datasets"][0]["epsilon"] *= 0.9
    result = _run("-", stdin=json.dumps(doc))
    assert result.returncode == 1
    assert "icu: reported" in result.stdout and "UNDER-REPORTED" in result.stdout


def test_the_script_imports_nothing_of_tessera() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    imported = set(re.findall(r"^(?:from|import) (\w+)", source, re.MULTILINE))
    assert imported <= {"__future__", "argparse", "json", "math", "sys", "collections",
                        "pathlib", "dp_accounting"}


def test_the_documented_script_is_the_shipped_one() -> None:
    doc = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
    assert SCRIPT.read_text(encoding="utf-8") in blocks

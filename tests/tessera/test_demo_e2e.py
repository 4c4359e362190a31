"""``tessera demo`` end to end: real SuperLink, SuperNodes and site agents on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from client_app.custody.ckks_keys import load_secret_context
from client_app.custody.vault import unlock_vault
from client_app.datasets.versions import read_current
from client_app.store.folder import open_site_dir
from privacy.ckks import can_decrypt
from tessera.demo import DEMO_PASSPHRASE

pytestmark = pytest.mark.slow

TESSERA = str(Path(sys.executable).parent / "tessera")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    work = tmp_path_factory.mktemp("e2e") / "work"
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_SITE_PASSPHRASE"}
    proc = subprocess.run(
        [TESSERA, "demo", "--num-sites", "3", "--rounds", "2", "--workdir", str(work),
         "--ceiling", "site-3=0.5", "--timeout", "900"],
        capture_output=True, text=True, timeout=1200, check=False, env=env,
    )
    report_path = work / "report.json"
    assert report_path.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, json.loads(report_path.read_text()), proc.stdout + proc.stderr


def test_demo_completes_an_encrypted_dp_study_on_real_processes(demo_run) -> None:
    work, report, output = demo_run
    assert report["status"] == "completed", report.get("error")
    assert report["engine"]["kind"] == "deployment"
    assert report["engine"]["supernodes"] == 3
    assert report["privacy"]["he"] is True and report["privacy"]["dp"] is True
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for rnd in report["rounds"]:
        assert rnd["seconds"] > 0
        assert all(b > 0 for b in rnd["bytes_up"].values())
        assert all(b > 0 for b in rnd["bytes_down"].values())
    # The model is close to the centralised baseline; the federation's own metrics are DP
    # estimates (noisy cells), so the released model is scored exactly by the launcher.
    check = report["released_model_check"]
    assert abs(check["auc"] - report["baseline"]["auc"]) < 0.05
    assert 0.0 <= report["final"]["auc"] <= 1.0
    assert report["final"]["dp_noise"]["cell_std"] > 0
    assert report["model"]["sha256"]
    assert (work / "coordinator" / report["model"]["path"]).exists()


def test_low_ceiling_site_is_refused_and_the_others_finish(demo_run) -> None:
    _, report, _ = demo_run
    first = report["rounds"][0]
    refused = {r["site"]: r for r in first["refused_sites"]}
    assert refused["site-3"]["code"] == "budget_exceeded"
    assert sorted(first["participating_sites"]) == ["site-1", "site-2"]
    spent = {s["name"]: s["epsilon_spent"] for s in report["sites"]}
    assert 0 < spent["site-1"] <= report["privacy"]["epsilon_target"]
    assert spent["site-3"] == 0.0


def test_demo_runs_over_tls_with_node_authentication(demo_run) -> None:
    work, report, output = demo_run
    assert report["engine"]["tls"] is True
    assert report["engine"]["node_auth"] is True
    assert "insecure" not in output.lower()
    assert (work / "federation.toml").exists()
    assert not (work / ".provisioning").exists()


def test_coordinator_folder_holds_no_ckks_secret_key(demo_run) -> None:
    work, report, _ = demo_run
    import tenseal as ts

    vault = unlock_vault(open_site_dir(work / "sites" / "site-1"), DEMO_PASSPHRASE)
    secret_bytes = load_secret_context(vault, report["study"]["plan_hash"])
    assert can_decrypt(secret_bytes)
    # Skip the parameter header the secret context shares with the public evaluation context.
    windows = {secret_bytes[i:i + 48] for i in range(1024, len(secret_bytes) - 48, 997)}
    contexts = 0
    for path in (work / "coordinator").rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        assert not any(w in data for w in windows), path.name
        if path.suffix in {".db", ".json", ".jsonl", ".toml", ".log", ".txt"} or path.name.endswith(
            ("-wal", "-shm")
        ):
            continue
        try:
            ts.context_from(data)
        except Exception:
            continue
        contexts += 1
        assert not can_decrypt(data), path.name
    assert contexts >= 1


def test_no_dataset_bytes_are_stored_in_plaintext(demo_run) -> None:
    work, _, _ = demo_run
    vault = unlock_vault(open_site_dir(work / "sites" / "site-2"), DEMO_PASSPHRASE)
    content, _ = read_current(vault, "breast_cancer")
    # The header row is the study's public schema (the plan names every column, and the site
    # store keeps the plans it received); every byte after it is patient data.
    rows = content.split(b"\n", 1)[1]
    assert len(rows) > 1000
    windows = {rows[i:i + 16] for i in range(0, len(rows) - 16, 7)}
    for path in (work / "sites" / "site-2").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked = [w for w in windows if w in data]
            assert not leaked, path.relative_to(work)


def test_no_process_is_left_behind(demo_run) -> None:
    work, _, _ = demo_run
    assert _processes_mentioning(str(work)) == []


def test_every_party_has_a_verifying_audit_log_with_the_study(demo_run) -> None:
    from privacy.audit_log import read_records
    from privacy.audit_verify import verify_log
    from privacy.sealing import SealingKey

    work, report, _ = demo_run
    key_file = work / "auditor" / "kit" / "sealing.key"
    auditor = SealingKey(bytes.fromhex(key_file.read_text().strip()))
    logs = [work / "sites" / f"site-{i}" / "audit" / "site.log" for i in (1, 2, 3)]
    logs.append(work / "coordinator" / "audit" / "coordinator.log")
    for log in logs:
        result = verify_log(log)
        assert result.ok, (log.name, result.message)
        entries = read_records(log, auditor_key=auditor)
        assert [e.index for e in entries] == list(range(len(entries)))
        studies = {e.header.get("plan_hash") for e in entries}
        assert report["study"]["plan_hash"] in studies


def test_the_auditor_pulled_every_log_over_mutual_tls(demo_run) -> None:
    work, report, _ = demo_run
    parties = {"coordinator", "site-1", "site-2", "site-3"}
    assert set(report["audit"]) == parties
    for party, outcome in report["audit"].items():
        assert outcome["pulled"] and outcome["verified"], (party, outcome)
        assert outcome["records"] > 0
        assert (work / "auditor" / "pulled" / f"{party}.log").exists()


def test_every_release_is_in_the_ledger_and_an_outside_accountant_agrees(
        demo_run, tmp_path: Path) -> None:
    work, report, _ = demo_run
    env = {**os.environ, "TESSERA_SITE_PASSPHRASE": DEMO_PASSPHRASE}
    script = Path(__file__).resolve().parents[2] / "scripts" / "recompute_epsilon.py"
    for site in ("site-1", "site-2"):
        shown = subprocess.run([TESSERA, "site", "budget", "--site-dir",
                                str(work / "sites" / site), "--json"],
                               capture_output=True, text=True, timeout=120, env=env, check=False)
        assert shown.returncode == 0, shown.stderr
        ledger = json.loads(shown.stdout)
        kinds = [(e["kind"], e["mechanism"]) for e in ledger["entries"]]
        assert kinds == [("row_counts", "gaussian"), ("statistics", "gaussian"),
                         ("dp_sgd", "poisson_subsampled_gaussian"),
                         ("dp_sgd", "poisson_subsampled_gaussian"),
                         ("evaluation_counts", "gaussian"), ("importance", "gaussian")], site
        path = tmp_path / f"{site}.json"
        path.write_text(shown.stdout, encoding="utf-8")
        checked = subprocess.run([sys.executable, str(script), str(path), "--each-entry"],
                                 capture_output=True, text=True, timeout=300, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "UNDER-REPORTED" not in checked.stdout
        spent = {s["name"]: s["epsilon_spent"] for s in report["sites"]}[site]
        assert spent == pytest.approx(ledger["entries"][-1]["epsilon_cumulative"], abs=1e-9)


def test_the_demo_ends_with_next_steps_that_work(demo_run) -> None:
    work, _, output = demo_run
    steps = output[output.index("next steps:"):]
    site = work / "sites" / "site-1"
    assert f"tessera site gui --site-dir {site}" in steps
    assert f"passphrase '{DEMO_PASSPHRASE}'" in steps
    commands = [line.split(":", 1)[1].strip() for line in steps.splitlines()
                if "tessera --kit" in line or "site budget" in line]
    assert len(commands) == 3 and any(" model list " in c for c in commands)
    assert any(" study report latest " in c for c in commands)
    env = {**os.environ, "TESSERA_SITE_PASSPHRASE": DEMO_PASSPHRASE}
    for command in commands:
        argv = [TESSERA, *command.split()[1:]]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                              env=env)
        assert done.returncode == 0, f"{command}: {done.stdout[-1500:]}{done.stderr[-1500:]}"

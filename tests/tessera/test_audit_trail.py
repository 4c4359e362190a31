"""After a provisioned study, every party has an audit log the auditor can verify and read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.store.site_store import SiteStore
from common.plan import bundled_plan_path, load_plan, override
from server.coordinator import run_study
from tessera import local_federation
from tessera.cli import app
from tessera.inprocess import InProcessGrid

PASS = "audit test passphrase"
runner = CliRunner()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("audit") / "work"
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1)
    fed = local_federation.build(work, plan, sites=3, ceilings={}, passphrase=PASS, tls=True)
    with SiteStore.open(fed.sites[1]) as store:
        store.approve(fed.plan_hash, actor="operator", note="=HYPERLINK(\"x\")")
    grid = InProcessGrid([SiteAgent(unlock_vault(s, PASS)) for s in fed.sites])
    result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id="a1",
                       expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    return fed


def _auditor(fed, *args: str):
    kit = fed.workdir / "auditor" / "kit"
    return runner.invoke(app, ["--kit", str(kit), "audit", *args])


def _logs(fed) -> list[Path]:
    return [s.root / "audit" / "site.log" for s in fed.sites] + \
        [fed.coordinator_dir / "audit" / "coordinator.log"]


def test_every_party_log_verifies(study, tmp_path: Path) -> None:
    for log in _logs(study):
        result = _auditor(study, "verify", str(log))
        assert result.exit_code == 0, result.output
        assert "TAIL UNVERIFIED" in result.output and "OK:" not in result.output
        checkpoint = tmp_path / f"{log.parent.parent.name}.cp"
        stored = _auditor(study, "checkpoint", str(log), "--out", str(checkpoint))
        assert stored.exit_code == 0, stored.output
        trusted = _auditor(study, "verify", str(log), "--checkpoint", str(checkpoint))
        assert trusted.exit_code == 0, trusted.output
        assert "OK:" in trusted.output


def test_a_log_cut_below_a_stored_checkpoint_is_reported_truncated(study, tmp_path) -> None:
    log = _logs(study)[0]
    checkpoint = tmp_path / "cp"
    assert _auditor(study, "checkpoint", str(log), "--out", str(checkpoint)).exit_code == 0
    lines = log.read_bytes().split(b"\n")
    cut = tmp_path / "cut.log"
    cut.write_bytes(b"\n".join(lines[:4]) + b"\n")
    result = _auditor(study, "verify", str(cut), "--checkpoint", str(checkpoint))
    assert result.exit_code != 0
    assert "truncated" in result.output


def test_verification_runs_are_recorded_in_the_auditors_own_log(study) -> None:
    from privacy.audit_log import read_records
    from privacy.audit_verify import verify_log
    from privacy.sealing import SealingKey

    kit = study.workdir / "auditor" / "kit"
    assert _auditor(study, "verify", str(_logs(study)[0])).exit_code == 0
    own = kit / "audit" / "auditor.log"
    assert verify_log(own).ok
    key = SealingKey(bytes.fromhex((kit / "sealing.key").read_text().strip()))
    runs = [e for e in read_records(own, auditor_key=key) if e.header["event"] == "log_verified"]
    assert runs and runs[-1].details["log"] == "site.log" and runs[-1].details["ok"] is True


def test_auditor_reads_the_study_events_in_order(study) -> None:
    key = study.workdir / "auditor" / "kit" / "sealing.key"
    site = _auditor(study, "show", str(_logs(study)[0]), "--key", str(key), "--json")
    assert site.exit_code == 0, site.output
    rows = json.loads(site.output)
    assert [r["index"] for r in rows] == list(range(len(rows)))
    events = [r["event"] for r in rows]
    for expected in ("kit_imported", "study_approved", "dataset_registered", "he_key_generated",
                     "epsilon_spent", "update_sent", "model_released"):
        assert expected in events, events
    coordinator = _auditor(study, "show", str(_logs(study)[-1]), "--key", str(key), "--json",
                           "--event", "model_registered")
    assert coordinator.exit_code == 0, coordinator.output
    assert len(json.loads(coordinator.output)) == 1


def test_a_flipped_byte_is_reported_with_its_record(study, tmp_path: Path) -> None:
    log = _logs(study)[1]
    data = bytearray(log.read_bytes())
    lines = data.split(b"\n")
    offset = len(lines[0]) + 1 + len(lines[1]) + 1 + 40  # inside record 1
    data[offset] ^= 0x01
    broken = tmp_path / "broken.log"
    broken.write_bytes(bytes(data))
    result = _auditor(study, "verify", str(broken))
    assert result.exit_code != 0
    assert "record 1" in result.output


def test_csv_export_neutralises_spreadsheet_formulas(study, tmp_path: Path) -> None:
    key = study.workdir / "auditor" / "kit" / "sealing.key"
    out = tmp_path / "site2.csv"
    result = _auditor(study, "export", str(_logs(study)[1]), "--key", str(key), "--out",
                      str(out), "--format", "csv")
    assert result.exit_code == 0, result.output
    import csv

    cells = [cell for row in csv.reader(out.open()) for cell in row]
    assert any("HYPERLINK" in cell for cell in cells)
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@")), cell


def test_a_site_operator_may_not_read_the_auditor_view(study) -> None:
    site_kit = study.sites[0].root / "kit"
    result = runner.invoke(app, ["--kit", str(site_kit), "audit", "verify",
                                 str(_logs(study)[0])])
    assert result.exit_code == 10


@pytest.mark.parametrize("cell", ["=1+1", "+A1", "-2+3", "@SUM(A1)", "\t=x", "\r=x"])
def test_formula_like_cells_are_neutralised(cell: str) -> None:
    from tessera.audit_cli import neutralise

    assert neutralise(cell) == "'" + cell
    assert neutralise("plain text") == "plain text"

"""Drift at a site: the newest dataset version against the one a kept model trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from client_app.custody.vault import SiteVault, unlock_vault
from client_app.datasets.validation import Policy
from client_app.datasets.versions import read_current, register_content
from client_app.governance.consent import withdraw, withdrawn_ids
from client_app.learning.drift import MAJOR_PSI, drift_report
from client_app.store.folder import open_site_dir
from common.datasets import csv_bytes, read_csv_bytes
from common.errors import ErrorCode, TesseraError
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app
from tests.registered import PASSPHRASE, RegisteredStudy, registered_study


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RegisteredStudy:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)
    monkeypatch.setenv("TESSERA_SITE_PASSPHRASE", PASSPHRASE)
    return registered_study(tmp_path)


def unlock_vault_at(site: Path) -> SiteVault:
    return unlock_vault(open_site_dir(site), PASSPHRASE)


def test_unchanged_data_shows_no_drift(study: RegisteredStudy) -> None:
    report = drift_report(unlock_vault_at(study.sites[0]))
    assert report.same_version and report.level == "stable"
    assert report.score_psi == 0.0 and all(f.psi == 0.0 and f.ks == 0.0
                                           for f in report.features)
    assert len(report.features) == len(study.features)


def test_a_new_version_with_another_case_mix_is_flagged(study: RegisteredStudy) -> None:
    vault = unlock_vault_at(study.sites[0])
    content, before = read_current(vault, study.plan.dataset.name)
    table = read_csv_bytes(content, study.plan.dataset, source_name="current")
    radius = table.X[:, study.features.index("mean_radius")]
    larger = np.flatnonzero(radius > np.median(radius))  # only the larger masses now
    register_content(vault, csv_bytes(table, larger), source_name="new.csv", plan=study.plan,
                     policy=Policy(), actor="operator")
    report = drift_report(vault)
    out = withdrawn_ids(vault, study="breast_cancer")  # the demo withdraws a patient or two
    assert report.reference_version == before.version != report.current_version
    assert report.current_rows == len(set(table.patient_ids[larger]) - out)
    assert report.reference_rows == len(set(table.patient_ids) - out)
    assert report.level == "major"
    assert "mean_radius" in report.shifted(threshold=MAJOR_PSI)
    by_name = {f.feature: f for f in report.features}
    assert by_name["mean_radius"].ks > 0.4 and by_name["mean_radius"].ks_p_value < 1e-6
    assert report.score_psi > MAJOR_PSI
    assert report.mean_score_current < report.mean_score_reference  # larger masses: malignant
    text = json.dumps(report.to_json())
    assert all(pid not in text for pid in table.patient_ids[:20])


def test_withdrawn_patients_are_left_out(study: RegisteredStudy) -> None:
    vault = unlock_vault_at(study.sites[0])
    content, _ = read_current(vault, study.plan.dataset.name)
    table = read_csv_bytes(content, study.plan.dataset, source_name="current")
    before = drift_report(vault).reference_rows
    fresh = [p for p in table.patient_ids if p not in withdrawn_ids(vault, study="breast_cancer")]
    withdraw(vault, fresh[:10], actor="operator", scope="breast_cancer")
    assert drift_report(vault).reference_rows == before - 10


def test_cli_prints_json_and_refuses_an_unknown_model(study: RegisteredStudy) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["site", "drift", "--site-dir", str(study.sites[1]), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["level"] == "stable" and doc["same_version"] is True
    bad = runner.invoke(app, ["site", "drift", "--site-dir", str(study.sites[1]),
                              "--model", "nope"])
    assert bad.exit_code != 0 and "no stored model named 'nope'" in bad.output


def test_a_site_without_a_kept_model_gets_a_clear_error(tmp_path: Path) -> None:
    from client_app.custody.vault import create_vault
    from client_app.store.folder import init_site_dir

    vault = create_vault(init_site_dir(tmp_path / "s", name="s"), PASSPHRASE)
    with pytest.raises(TesseraError) as info:
        drift_report(vault)
    assert info.value.code == ErrorCode.NOT_FOUND

"""Site commands that use the passphrase: data at rest, wrong passphrase, rotation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.cli.main import app
from client_app.custody.vault import unlock_vault
from client_app.datasets.versions import read_current
from client_app.store.folder import open_site_dir
from common.datasets import csv_bytes, load_bundled, read_csv_bytes
from common.plan import bundled_plan_path, load_plan

DIABETES_PLAN = str(bundled_plan_path("diabetes"))

runner = CliRunner()


def _folder_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def site(tmp_path: Path) -> tuple[Path, Path]:
    site_dir = tmp_path / "site"
    result = runner.invoke(app, ["init", "--site-dir", str(site_dir), "--name", "north"])
    assert result.exit_code == 0, result.output
    source = tmp_path / "cohort.csv"
    source.write_bytes(csv_bytes(load_bundled("diabetes")))
    return site_dir, source


def test_registered_dataset_is_encrypted_at_rest(site) -> None:
    site_dir, source = site
    result = runner.invoke(app, ["add-data", str(source), "--site-dir", str(site_dir),
                                 "--name", "diabetes", "--plan", DIABETES_PLAN])
    assert result.exit_code == 0, result.output
    vault = unlock_vault(open_site_dir(site_dir))
    stored, _ = read_current(vault, "diabetes")
    for content in (source.read_bytes(), stored):
        windows = {content[i:i + 16] for i in range(0, len(content) - 16)}
        for path in site_dir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(w in data for w in windows), path.name
    spec = load_plan(bundled_plan_path("diabetes")).dataset
    assert read_csv_bytes(stored, spec, source_name="x").n_rows == 442


def test_wrong_passphrase_is_refused_and_changes_nothing(site, monkeypatch) -> None:
    site_dir, source = site
    before = _folder_digest(site_dir)
    monkeypatch.setenv("TESSERA_SITE_PASSPHRASE", "not the passphrase")
    result = runner.invoke(app, ["add-data", str(source), "--site-dir", str(site_dir),
                                 "--name", "diabetes", "--plan", DIABETES_PLAN])
    assert result.exit_code == 9
    assert "wrong passphrase" in result.output
    assert "Traceback" not in result.output
    assert _folder_digest(site_dir) == before


def test_malformed_csv_is_refused_and_nothing_is_stored(site, tmp_path: Path) -> None:
    site_dir, _ = site
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,age\nP1,50\nP2\n")
    before = _folder_digest(site_dir)
    result = runner.invoke(app, ["add-data", str(bad), "--site-dir", str(site_dir),
                                 "--name", "x", "--plan", DIABETES_PLAN])
    assert result.exit_code == 3
    assert "row 2" in result.output
    assert "header: column 'bmi' (a feature) is missing" in result.output
    assert _folder_digest(site_dir) == before


def test_rotated_passphrase_reads_old_data_and_the_old_one_is_refused(site, monkeypatch) -> None:
    site_dir, source = site
    assert runner.invoke(app, ["add-data", str(source), "--site-dir", str(site_dir),
                               "--name", "diabetes", "--plan", DIABETES_PLAN]).exit_code == 0
    stored, _ = read_current(unlock_vault(open_site_dir(site_dir)), "diabetes")
    data_before = _folder_digest(site_dir / "data")
    monkeypatch.setenv("TESSERA_NEW_SITE_PASSPHRASE", "a brand new passphrase")
    result = runner.invoke(app, ["rotate-passphrase", "--site-dir", str(site_dir)])
    assert result.exit_code == 0, result.output
    assert _folder_digest(site_dir / "data") == data_before  # no data file rewritten
    vault = unlock_vault(open_site_dir(site_dir), "a brand new passphrase")
    assert read_current(vault, "diabetes")[0] == stored
    result = runner.invoke(app, ["unlock-check", "--site-dir", str(site_dir)])
    assert result.exit_code == 9

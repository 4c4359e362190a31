"""``tessera site dataset ...`` and ``site add-data``: the same checks as the service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.cli.main import app
from client_app.custody.vault import unlock_vault
from client_app.datasets.versions import dataset_versions, read_current
from client_app.store.folder import open_site_dir
from common.cli_options import login_name
from common.plan import plan_to_toml
from tessera.cli import app as tessera_app
from tests.client_app.datasets.test_validation import PLAN, base_rows, to_csv, to_parquet
from tests.client_app.datasets.test_versions import MALFORMED, folder_digest, write

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    result = invoke("init", "--site-dir", str(root), "--name", "north")
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    return write(tmp_path, "plan.toml", plan_to_toml(PLAN).encode())


def test_check_exits_0_for_a_clean_file(tmp_path: Path, plan_file: Path) -> None:
    data = write(tmp_path, "cohort.csv", to_csv(base_rows()))
    result = invoke("dataset", "check", str(data), "--plan", str(plan_file))
    assert result.exit_code == 0, result.output
    assert "cohort.csv: csv, 40 data rows, 6 columns; no issues" in result.output


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_check_prints_the_report_and_exits_3(tmp_path: Path, plan_file: Path, case: str) -> None:
    make, expected = MALFORMED[case]
    data = write(tmp_path, "cohort.csv", make())
    result = invoke("dataset", "check", str(data), "--plan", str(plan_file))
    assert result.exit_code == 3
    assert expected in result.output and "Traceback" not in result.output


def _with_outliers() -> bytes:
    rows = base_rows()
    rows[6][2] = "60"  # in range (10..80) but far from the other BMIs: an outlier
    rows[8][3] = "400"  # sbp far out too
    return to_csv(rows)


def test_check_exits_0_when_the_default_policy_keeps_every_issue(
        site_dir: Path, tmp_path: Path, plan_file: Path) -> None:
    data = write(tmp_path, "cohort.csv", _with_outliers())
    result = invoke("dataset", "check", str(data), "--plan", str(plan_file))
    assert result.exit_code == 0, result.output
    assert "the default policy keeps these (outlier)" in result.output
    assert "issue counts: outlier 2" in result.output
    checked = json.loads(invoke("dataset", "check", str(data), "--plan", str(plan_file),
                                "--json").stdout)
    assert checked["default_policy"] == {"accepts": True, "kept": ["outlier"], "refused": []}
    assert checked["ok"] is False and checked["issue_counts"] == {"outlier": 2}
    assert invoke("add-data", str(data), "--site-dir", str(site_dir), "--plan",
                  str(plan_file)).exit_code == 0
    shown = invoke("dataset", "show", "cohort", "--site-dir", str(site_dir))
    assert "issue counts: outlier 2;" in shown.output  # the same words and numbers as check
    versions = json.loads(invoke("dataset", "show", "cohort", "--site-dir", str(site_dir),
                                 "--json").stdout)
    assert versions[0]["report"]["issues"] == checked["issue_counts"]


def test_check_exits_3_and_names_what_the_default_policy_refuses(
        tmp_path: Path, plan_file: Path) -> None:
    rows = base_rows()
    rows[6][2] = "60"
    rows[3][2] = ""  # a missing value: refused by default
    data = write(tmp_path, "cohort.csv", to_csv(rows))
    result = invoke("dataset", "check", str(data), "--plan", str(plan_file))
    assert result.exit_code == 3
    assert "the default policy refuses missing: choose what to do" in result.output
    doc = json.loads(invoke("dataset", "check", str(data), "--plan", str(plan_file),
                            "--json").stdout)
    assert doc["default_policy"] == {"accepts": False, "kept": ["outlier"],
                                     "refused": ["missing"]}


def test_check_as_json_lists_issues_with_rows(tmp_path: Path, plan_file: Path) -> None:
    rows = base_rows()
    rows[2][1] = "130"
    data = write(tmp_path, "cohort.csv", to_csv(rows))
    result = invoke("dataset", "check", str(data), "--plan", str(plan_file), "--json")
    assert result.exit_code == 3
    report = json.loads(result.output)
    assert report["issues"][0]["kind"] == "out_of_range" and report["issues"][0]["rows"] == [3]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_register_refuses_a_malformed_file_and_changes_nothing(
        site_dir: Path, tmp_path: Path, plan_file: Path, case: str) -> None:
    make, expected = MALFORMED[case]
    data = write(tmp_path, "cohort.csv", make())
    before = folder_digest(site_dir)
    result = invoke("dataset", "register", str(data), "--plan", str(plan_file),
                    "--site-dir", str(site_dir), "--actor", "ann")
    assert result.exit_code == 3
    assert "error: cohort.csv refused:" in result.output and expected in result.output
    assert folder_digest(site_dir) == before


def test_register_applies_the_chosen_policy(site_dir: Path, tmp_path: Path,
                                            plan_file: Path) -> None:
    rows = base_rows()
    rows[0][2] = ""
    rows[5][1] = "130"
    data = write(tmp_path, "cohort.csv", to_csv(rows + rows[10:14]))
    result = invoke("dataset", "register", str(data), "--plan", str(plan_file),
                    "--site-dir", str(site_dir), "--actor", "ann", "--missing", "impute_median",
                    "--out-of-range", "clip", "--duplicates", "drop", "--json")
    assert result.exit_code == 0, result.output
    version = json.loads(result.output)
    assert version["rows"] == 40 and version["actor"] == "ann"
    assert version["policy"] == {"missing": "impute_median", "out_of_range": "clip",
                                 "outliers": "keep", "duplicates": "drop"}
    assert version["report"]["applied"] == {"rows": 40, "dropped_rows": 4,
                                            "imputed_values": 1, "clipped_values": 1}
    site = open_site_dir(site_dir)
    assert [v.version for v in dataset_versions(site)] == [version["version"]]


def test_register_refuses_an_unknown_policy_choice(site_dir: Path, tmp_path: Path,
                                                   plan_file: Path) -> None:
    data = write(tmp_path, "cohort.csv", to_csv(base_rows()))
    before = folder_digest(site_dir)
    result = invoke("dataset", "register", str(data), "--plan", str(plan_file),
                    "--site-dir", str(site_dir), "--actor", "ann", "--missing", "guess")
    assert result.exit_code == 2
    assert "policy.missing: must be one of refuse, drop, impute_median, impute_mean" in (
        result.output)
    assert folder_digest(site_dir) == before


def test_register_records_the_login_name_without_actor(site_dir: Path, tmp_path: Path,
                                                       plan_file: Path) -> None:
    data = write(tmp_path, "cohort.csv", to_csv(base_rows()))
    result = invoke("dataset", "register", str(data), "--plan", str(plan_file),
                    "--site-dir", str(site_dir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["actor"] == login_name()


def test_list_and_show_give_versions_with_lineage(site_dir: Path, tmp_path: Path,
                                                  plan_file: Path) -> None:
    first = write(tmp_path, "a.csv", to_csv(base_rows(30)))
    second = write(tmp_path, "b.parquet", to_parquet(base_rows()))
    for data in (first, second):
        result = invoke("dataset", "register", str(data), "--plan", str(plan_file),
                        "--site-dir", str(site_dir), "--actor", "ann")
        assert result.exit_code == 0, result.output
    listed = json.loads(invoke("dataset", "list", "--site-dir", str(site_dir), "--json").output)
    assert [(d["dataset"], d["versions"]) for d in listed] == [("cohort", 2)]
    shown = json.loads(invoke("dataset", "show", "cohort", "--site-dir", str(site_dir),
                              "--json").output)
    assert [v["source_format"] for v in shown] == ["csv", "parquet"]
    assert shown[1]["parent_version"] == shown[0]["version"]
    text = invoke("dataset", "show", "cohort", "--site-dir", str(site_dir)).output
    assert f"(parent {shown[0]['version'][:12]})" in text and "b.parquet (parquet" in text
    table = invoke("dataset", "list", "--site-dir", str(site_dir))
    assert table.exit_code == 0 and "cohort" in table.output
    missing = invoke("dataset", "show", "other", "--site-dir", str(site_dir))
    assert missing.exit_code == 4 and "no versions of dataset 'other'" in missing.output


def test_add_data_needs_a_plan_and_registers_with_the_default_policy(
        site_dir: Path, tmp_path: Path, plan_file: Path) -> None:
    data = write(tmp_path, "cohort.csv", to_csv(base_rows()))
    assert invoke("add-data", str(data), "--site-dir", str(site_dir)).exit_code == 2
    result = invoke("add-data", str(data), "--site-dir", str(site_dir), "--plan", str(plan_file))
    assert result.exit_code == 0, result.output
    assert "dataset cohort: version" in result.output
    content, version = read_current(unlock_vault(open_site_dir(site_dir)), "cohort")
    assert version.actor == login_name() and version.policy["missing"] == "refuse"
    assert content.startswith(b"patient_id,age,bmi,sbp,outcome,sex\n")


def test_the_access_policy_lets_site_operators_and_auditors_read_versions(
        site_dir: Path, tmp_path: Path, plan_file: Path) -> None:
    data = write(tmp_path, "cohort.csv", to_csv(base_rows()))
    result = CliRunner().invoke(tessera_app, [
        "site", "dataset", "register", str(data), "--plan", str(plan_file),
        "--site-dir", str(site_dir), "--actor", "ann"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(tessera_app, ["site", "dataset", "list", "--site-dir",
                                              str(site_dir)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(tessera_app, [
        "site", "dataset", "check", str(data), "--plan", str(plan_file),
        "--site-dir", str(site_dir)])
    assert result.exit_code == 0, result.output

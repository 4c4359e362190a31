"""``tessera site ...`` commands: site folders, approvals, the budget, the ceiling, events."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.cli.main import app
from client_app.store.folder import SiteDir, open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError

PLAN = "c0ffee" + "0" * 58
LEDGER_FIELDS = {
    "noise_multiplier", "sample_rate", "steps", "delta", "epsilon", "epsilon_cumulative",
    "plan_hash", "round", "dataset_id", "dataset_version", "at",
}


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sites" / "h1"
    result = _invoke("init", "--site-dir", str(root), "--name", "h1", "--ceiling", "5")
    assert result.exit_code == 0, result.output
    return root


def _record_runs(root: Path) -> None:
    with SiteStore.open(open_site_dir(root)) as store:
        for round_, dataset in ((1, "icu"), (2, "icu"), (1, "ward")):
            store.record_training(
                plan_hash=PLAN, study="sepsis", round=round_, dataset_id=dataset,
                dataset_version="v3", noise_multiplier=1.0, sample_rate=0.02, steps=40,
                delta=1e-5,
            )


def test_init_creates_a_private_site_folder(site_dir: Path) -> None:
    site = SiteDir(root=site_dir, name="h1")
    for folder in (site.root, site.keys_dir, site.data_dir, site.audit_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(site.db_path.stat().st_mode) == 0o600
    config = tomllib.loads(site.config_path.read_text(encoding="utf-8"))
    assert config["name"] == "h1" and "created" in config
    assert open_site_dir(site_dir) == SiteDir(root=site_dir, name="h1")


def test_init_again_with_the_same_name_keeps_the_site(site_dir: Path) -> None:
    _invoke("approve", PLAN, "--site-dir", str(site_dir))
    result = _invoke("init", "--site-dir", str(site_dir), "--name", "h1", "--ceiling", "9")
    assert result.exit_code == 0
    assert "privacy ceiling 5" in result.stdout
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert store.is_approved(PLAN)
        assert store.ceiling() == 5.0


def test_init_refuses_a_folder_of_another_site(site_dir: Path) -> None:
    result = _invoke("init", "--site-dir", str(site_dir), "--name", "h2")
    assert result.exit_code == TesseraError(ErrorCode.PERMISSION_DENIED, "").exit_code
    assert "belongs to site 'h1'" in result.stderr
    assert open_site_dir(site_dir).name == "h1"


def test_init_refuses_a_bad_site_name(tmp_path: Path) -> None:
    result = _invoke("init", "--site-dir", str(tmp_path / "x"), "--name", "../evil")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: name must be")
    assert not (tmp_path / "x").exists()


def test_unknown_site_folder_exits_with_not_found(tmp_path: Path) -> None:
    result = _invoke("budget", "--site-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == TesseraError(ErrorCode.NOT_FOUND, "").exit_code
    assert "not initialised (no site.toml)" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "nowhere").exists()


def test_bad_plan_hash_is_refused_with_a_clear_message(site_dir: Path) -> None:
    result = _invoke("approve", "abc123", "--site-dir", str(site_dir))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: PLAN_HASH must be 64 hexadecimal characters (got 6 characters)"
    )
    assert "Traceback" not in result.output
    assert _invoke("approvals", "--site-dir", str(site_dir), "--json").stdout.strip() == "[]"


def test_approve_then_revoke_is_listed_in_order(site_dir: Path) -> None:
    upper = PLAN.upper()
    assert _invoke("approve", upper, "--site-dir", str(site_dir), "--note", "[/] ok").exit_code == 0
    assert _invoke("revoke", PLAN, "--site-dir", str(site_dir), "--actor", "dpo").exit_code == 0
    listed = json.loads(_invoke("approvals", "--site-dir", str(site_dir), "--json").stdout)
    assert [(r["plan_hash"], r["decision"], r["actor"]) for r in listed] == [
        (PLAN, "approved", "operator"), (PLAN, "revoked", "dpo"),
    ]
    table = _invoke("approvals", "--site-dir", str(site_dir))
    assert table.exit_code == 0 and "[/] ok" in table.stdout
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert not store.is_approved(PLAN)


def test_budget_json_lists_every_ledger_entry_with_its_fields(site_dir: Path) -> None:
    _record_runs(site_dir)
    result = _invoke("budget", "--site-dir", str(site_dir), "--json")
    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    assert len(entries) == 3
    for entry in entries:
        assert LEDGER_FIELDS <= entry.keys()
    icu = [e for e in entries if e["dataset_id"] == "icu"]
    assert icu[1]["epsilon_cumulative"] > icu[0]["epsilon_cumulative"] == icu[0]["epsilon"]
    only_ward = json.loads(
        _invoke("budget", "--site-dir", str(site_dir), "--json", "--dataset", "ward").stdout
    )
    assert [e["dataset_id"] for e in only_ward] == ["ward"]


def test_budget_table_shows_the_ceiling_and_cumulative_per_dataset(site_dir: Path) -> None:
    _record_runs(site_dir)
    result = _invoke("budget", "--site-dir", str(site_dir))
    assert result.exit_code == 0
    assert "privacy ceiling: 5" in result.stdout
    assert "dataset icu: cumulative epsilon" in result.stdout
    assert "dataset ward: cumulative epsilon" in result.stdout


def test_raising_the_ceiling_needs_yes(site_dir: Path) -> None:
    refused = _invoke("ceiling", "--site-dir", str(site_dir), "8")
    assert refused.exit_code == TesseraError(ErrorCode.PERMISSION_DENIED, "").exit_code
    assert "requires confirmation; pass --yes" in refused.stderr
    assert "privacy ceiling: 5" in _invoke("ceiling", "--site-dir", str(site_dir)).stdout
    raised = _invoke("ceiling", "--site-dir", str(site_dir), "8", "--yes")
    assert raised.exit_code == 0 and "privacy ceiling: 8 (was 5)" in raised.stdout
    lowered = _invoke("ceiling", "--site-dir", str(site_dir), "2")
    assert lowered.exit_code == 0 and "privacy ceiling: 2 (was 8)" in lowered.stdout
    assert _invoke("ceiling", "--site-dir", str(site_dir), "--", "-1").exit_code == 2


def test_events_json_shows_ceiling_changes(site_dir: Path) -> None:
    _invoke("ceiling", "--site-dir", str(site_dir), "3")
    events = json.loads(_invoke("events", "--site-dir", str(site_dir), "--json").stdout)
    changes = [e["details"] for e in events if e["kind"] == "ceiling_changed"]
    assert changes[-1] == {"old": 5.0, "new": 3.0, "actor": "operator"}
    table = _invoke("events", "--site-dir", str(site_dir))
    assert table.exit_code == 0 and "ceiling_changed" in table.stdout

"""``tessera site budget|ceiling|delta|non-private``: the privacy ledger (every release with
its mechanism, the site's delta, the integrity check) and the site's privacy settings."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from client_app.custody.site_secrets import ledger_key
from client_app.custody.vault import unlock_vault
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, exit_status
from privacy.mechanisms import GaussianRelease
from tests.client_app.cli.conftest import PLAN, invoke

ENTRY_FIELDS = {
    "id", "at", "kind", "mechanism", "parameters", "delta", "epsilon", "epsilon_cumulative",
    "plan_hash", "study", "run_id", "round", "dataset_id", "dataset_version", "mac",
}


def _record_runs(root: Path) -> None:
    site = open_site_dir(root)
    with SiteStore.open(site, ledger_key=ledger_key(unlock_vault(site))) as store:
        store.set_delta(1e-5, actor="ops")
        for round_, dataset in ((1, "icu"), (2, "icu"), (1, "ward")):
            store.record_training(
                plan_hash=PLAN, study="sepsis", run_id="r1", round=round_, dataset_id=dataset,
                dataset_version="v3", noise_multiplier=1.0, sample_rate=0.02, steps=40,
            )
        store.record_release(mechanism=GaussianRelease(4.0, 3), kind="statistics",
                             plan_hash=PLAN, study="sepsis", run_id="r1", round=0,
                             dataset_id="icu", dataset_version="v3")


def test_budget_json_lists_every_entry_with_its_mechanism_and_each_datasets_delta(
        site_dir: Path) -> None:
    _record_runs(site_dir)
    result = invoke("budget", "--site-dir", str(site_dir), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format"] == "tessera-privacy-ledger" and doc["integrity"]["ok"] is True
    entries = doc["entries"]
    assert len(entries) == 4
    for entry in entries:
        assert ENTRY_FIELDS <= entry.keys()
    dp, gaussian = entries[0], entries[3]
    assert (dp["kind"], dp["mechanism"], dp["parameters"]) == (
        "dp_sgd", "poisson_subsampled_gaussian",
        {"noise_multiplier": 1.0, "sample_rate": 0.02, "steps": 40})
    assert (gaussian["kind"], gaussian["mechanism"], gaussian["parameters"]) == (
        "statistics", "gaussian", {"noise_multiplier": 4.0, "count": 3})
    icu = [e for e in entries if e["dataset_id"] == "icu"]
    assert icu[1]["epsilon_cumulative"] > icu[0]["epsilon_cumulative"] == icu[0]["epsilon"]
    datasets = {d["dataset"]: d for d in doc["datasets"]}
    assert datasets["icu"]["delta"] == 1e-5 and datasets["icu"]["entries"] == [1, 2, 4]
    assert datasets["icu"]["epsilon"] == icu[-1]["epsilon_cumulative"]
    only_ward = json.loads(
        invoke("budget", "--site-dir", str(site_dir), "--json", "--dataset", "ward").stdout
    )
    assert [e["dataset_id"] for e in only_ward["entries"]] == ["ward"]
    assert [d["dataset"] for d in only_ward["datasets"]] == ["ward"]


def test_budget_table_shows_mechanisms_delta_ceiling_and_the_check(site_dir: Path) -> None:
    _record_runs(site_dir)
    result = invoke("budget", "--site-dir", str(site_dir))
    assert result.exit_code == 0
    out = result.stdout
    assert "privacy ceiling: 5" in out and "site delta: 1e-05 (set by the operator)" in out
    assert out.count("sampled gaussian:") == 3 and "gaussian: noise 4," in out
    assert "dataset icu: cumulative epsilon" in out and "at delta 1e-05, explicit" in out
    assert "ledger integrity: intact (4 entries verified)" in out


def test_budget_reports_a_tampered_ledger_and_exits_non_zero(site_dir: Path) -> None:
    _record_runs(site_dir)
    with sqlite3.connect(open_site_dir(site_dir).db_path) as conn:
        conn.execute("UPDATE ledger SET epsilon_cumulative = 0.0 WHERE id = 2")
    result = invoke("budget", "--site-dir", str(site_dir))
    assert result.exit_code == exit_status(ErrorCode.DATA_INVALID)
    assert "ledger integrity: FAILED at entry 2" in result.stdout
    as_json = invoke("budget", "--site-dir", str(site_dir), "--json")
    assert json.loads(as_json.stdout)["integrity"]["first_bad"] == 2


def test_raising_the_ceiling_needs_yes(site_dir: Path) -> None:
    refused = invoke("ceiling", "--site-dir", str(site_dir), "8")
    assert refused.exit_code == exit_status(ErrorCode.PERMISSION_DENIED)
    assert "requires confirmation; pass --yes" in refused.stderr
    assert "privacy ceiling: 5" in invoke("ceiling", "--site-dir", str(site_dir)).stdout
    raised = invoke("ceiling", "--site-dir", str(site_dir), "8", "--yes")
    assert raised.exit_code == 0 and "privacy ceiling: 8 (was 5)" in raised.stdout
    lowered = invoke("ceiling", "--site-dir", str(site_dir), "2")
    assert lowered.exit_code == 0 and "privacy ceiling: 2 (was 8)" in lowered.stdout
    assert invoke("ceiling", "--site-dir", str(site_dir), "--", "-1").exit_code == 2


def test_delta_is_shown_lowered_freely_and_raised_only_with_yes(site_dir: Path) -> None:
    shown = invoke("delta", "--site-dir", str(site_dir))
    assert shown.exit_code == 0 and "1/(10 n) per dataset (default)" in shown.stdout
    lowered = invoke("delta", "1e-6", "--site-dir", str(site_dir))
    assert lowered.exit_code == 0 and "privacy delta: 1e-06 (was the default)" in lowered.stdout
    refused = invoke("delta", "1e-5", "--site-dir", str(site_dir))
    assert refused.exit_code == exit_status(ErrorCode.PERMISSION_DENIED)
    assert "pass --yes" in refused.stderr
    raised = invoke("delta", "1e-5", "--yes", "--site-dir", str(site_dir))
    assert raised.exit_code == 0 and "(was 1e-06)" in raised.stdout
    assert invoke("delta", "lots", "--site-dir", str(site_dir)).exit_code == 2
    assert invoke("delta", "2", "--site-dir", str(site_dir)).exit_code == 2
    back = invoke("delta", "default", "--yes", "--site-dir", str(site_dir))
    assert back.exit_code == 0 and "default" in back.stdout
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert len(store.events(kind="delta_changed")) == 3


def test_non_private_studies_are_refused_until_allowed_with_yes(site_dir: Path) -> None:
    assert "refused" in invoke("non-private", "--site-dir", str(site_dir)).stdout
    refused = invoke("non-private", "allow", "--site-dir", str(site_dir))
    assert refused.exit_code == exit_status(ErrorCode.PERMISSION_DENIED)
    allowed = invoke("non-private", "allow", "--yes", "--site-dir", str(site_dir))
    assert allowed.exit_code == 0 and "allowed" in allowed.stdout
    assert invoke("non-private", "maybe", "--site-dir", str(site_dir)).exit_code == 2
    assert "refused" in invoke("non-private", "refuse", "--site-dir", str(site_dir)).stdout


def test_budget_without_the_vault_shows_the_ledger_unchecked(
        site_dir: Path, monkeypatch) -> None:
    _record_runs(site_dir)
    monkeypatch.delenv("TESSERA_SITE_PASSPHRASE")
    result = invoke("budget", "--site-dir", str(site_dir), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["integrity"]["checked"] is False and "not checked" in doc["integrity"]["reason"]
    assert len(doc["entries"]) == 4
    wrong = invoke("budget", "--site-dir", str(site_dir))
    assert "ledger integrity: not checked" in wrong.stdout


def test_the_privacy_settings_print_json_when_asked(site_dir: Path) -> None:
    def doc(*args: str) -> object:
        result = invoke(*args, "--site-dir", str(site_dir), "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert doc("ceiling") == {"ceiling": 5.0, "previous": None, "changed": False}
    assert doc("ceiling", "3") == {"ceiling": 3.0, "previous": 5.0, "changed": True}
    assert doc("delta") == {"delta": None, "default": True, "previous": None, "changed": False}
    assert doc("delta", "1e-6") == {"delta": 1e-6, "default": False, "previous": None,
                                    "changed": True}
    assert doc("non-private") == {"non_private_studies": "refused"}

"""``tessera site budget|ceiling``: the privacy ledger and the ceiling (raising needs --yes)."""

from __future__ import annotations

import json
from pathlib import Path

from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, exit_status
from tests.client_app.cli.conftest import PLAN, invoke

LEDGER_FIELDS = {
    "noise_multiplier", "sample_rate", "steps", "delta", "epsilon", "epsilon_cumulative",
    "plan_hash", "round", "dataset_id", "dataset_version", "at",
}


def _record_runs(root: Path) -> None:
    with SiteStore.open(open_site_dir(root)) as store:
        for round_, dataset in ((1, "icu"), (2, "icu"), (1, "ward")):
            store.record_training(
                plan_hash=PLAN, study="sepsis", round=round_, dataset_id=dataset,
                dataset_version="v3", noise_multiplier=1.0, sample_rate=0.02, steps=40,
                delta=1e-5,
            )


def test_budget_json_lists_every_ledger_entry_with_its_fields(site_dir: Path) -> None:
    _record_runs(site_dir)
    result = invoke("budget", "--site-dir", str(site_dir), "--json")
    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    assert len(entries) == 3
    for entry in entries:
        assert LEDGER_FIELDS <= entry.keys()
    icu = [e for e in entries if e["dataset_id"] == "icu"]
    assert icu[1]["epsilon_cumulative"] > icu[0]["epsilon_cumulative"] == icu[0]["epsilon"]
    only_ward = json.loads(
        invoke("budget", "--site-dir", str(site_dir), "--json", "--dataset", "ward").stdout
    )
    assert [e["dataset_id"] for e in only_ward] == ["ward"]


def test_budget_table_shows_the_ceiling_and_cumulative_per_dataset(site_dir: Path) -> None:
    _record_runs(site_dir)
    result = invoke("budget", "--site-dir", str(site_dir))
    assert result.exit_code == 0
    assert "privacy ceiling: 5" in result.stdout
    assert "dataset icu: cumulative epsilon" in result.stdout
    assert "dataset ward: cumulative epsilon" in result.stdout


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

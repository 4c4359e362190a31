"""``tessera site approve|reject|revoke|approvals``: decisions by plan hash, in order."""

from __future__ import annotations

import json
from pathlib import Path

from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.cli_options import login_name
from tests.client_app.cli.conftest import PLAN, invoke


def test_bad_plan_hash_is_refused_with_a_clear_message(site_dir: Path) -> None:
    result = invoke("approve", "abc123", "--site-dir", str(site_dir))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: PLAN_HASH must be 64 hexadecimal characters (got 6 characters)"
    )
    assert "Traceback" not in result.output
    assert invoke("approvals", "--site-dir", str(site_dir), "--json").stdout.strip() == "[]"


def _received(site_dir: Path, tmp_path: Path) -> str:
    """Receive the bundled breast-cancer plan at the site; its hash."""
    from common.plan import bundled_plan_path, load_plan, plan_hash

    path = bundled_plan_path("breast_cancer")
    assert invoke("study", "receive", str(path), "--site-dir", str(site_dir)).exit_code == 0
    return plan_hash(load_plan(path))


def test_approve_then_revoke_is_listed_in_order(site_dir: Path, tmp_path: Path) -> None:
    plan = _received(site_dir, tmp_path)
    upper = plan.upper()
    assert invoke("approve", upper, "--site-dir", str(site_dir), "--note", "[/] ok").exit_code == 0
    assert invoke("revoke", plan, "--site-dir", str(site_dir), "--actor", "dpo").exit_code == 0
    listed = json.loads(invoke("approvals", "--site-dir", str(site_dir), "--json").stdout)
    assert [(r["plan_hash"], r["decision"], r["actor"]) for r in listed] == [
        (plan, "approved", login_name()), (plan, "revoked", "dpo"),
    ]  # without --actor the login name is recorded
    table = invoke("approvals", "--site-dir", str(site_dir))
    assert table.exit_code == 0 and "[/] ok" in table.stdout
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert not store.is_approved(plan)


def test_approving_a_plan_with_a_looser_delta_than_the_sites_is_refused(
        site_dir: Path, tmp_path: Path) -> None:
    from common.plan import StudyPlan, bundled_plan_path, load_plan, plan_hash, plan_to_toml

    raw = load_plan(bundled_plan_path("breast_cancer")).model_dump()
    raw["privacy"]["delta"] = 0.5
    loose = StudyPlan.model_validate(raw)
    path = tmp_path / "loose.toml"
    path.write_text(plan_to_toml(loose), encoding="utf-8")
    assert invoke("study", "receive", str(path), "--site-dir", str(site_dir)).exit_code == 0
    assert invoke("delta", "1e-5", "--site-dir", str(site_dir)).exit_code == 0
    refused = invoke("approve", plan_hash(loose), "--site-dir", str(site_dir))
    assert refused.exit_code == 10  # PERMISSION_DENIED
    assert "privacy.delta" in refused.stderr and "0.5" in refused.stderr
    assert json.loads(invoke("approvals", "--site-dir", str(site_dir), "--json").stdout) == []


def test_approving_a_hash_the_site_never_received_is_refused(site_dir: Path) -> None:
    for digest in (PLAN, "0" * 64):
        result = invoke("approve", digest, "--site-dir", str(site_dir))
        assert result.exit_code == 4  # NOT_FOUND
        assert "never received at this site" in result.stderr
        assert "site study receive" in result.stderr
    assert json.loads(invoke("approvals", "--site-dir", str(site_dir), "--json").stdout) == []


def test_revoking_a_plan_never_approved_is_refused(site_dir: Path, tmp_path: Path) -> None:
    plan = _received(site_dir, tmp_path)
    for digest in (PLAN, plan):  # unknown; received but not approved
        result = invoke("revoke", digest, "--site-dir", str(site_dir))
        assert result.exit_code == 4, result.output
        assert "not approved at this site" in result.stderr
    assert invoke("reject", plan, "--site-dir", str(site_dir)).exit_code == 0
    refused = invoke("revoke", plan, "--site-dir", str(site_dir))
    assert refused.exit_code == 4  # a rejected plan is not approved either
    listed = json.loads(invoke("approvals", "--site-dir", str(site_dir), "--json").stdout)
    assert [r["decision"] for r in listed] == ["rejected"]

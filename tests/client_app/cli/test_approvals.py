"""``tessera site approve|reject|revoke|approvals``: decisions by plan hash, in order."""

from __future__ import annotations

import json
from pathlib import Path

from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from tests.client_app.cli.conftest import PLAN, invoke


def test_bad_plan_hash_is_refused_with_a_clear_message(site_dir: Path) -> None:
    result = invoke("approve", "abc123", "--site-dir", str(site_dir))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: PLAN_HASH must be 64 hexadecimal characters (got 6 characters)"
    )
    assert "Traceback" not in result.output
    assert invoke("approvals", "--site-dir", str(site_dir), "--json").stdout.strip() == "[]"


def test_approve_then_revoke_is_listed_in_order(site_dir: Path) -> None:
    upper = PLAN.upper()
    assert invoke("approve", upper, "--site-dir", str(site_dir), "--note", "[/] ok").exit_code == 0
    assert invoke("revoke", PLAN, "--site-dir", str(site_dir), "--actor", "dpo").exit_code == 0
    listed = json.loads(invoke("approvals", "--site-dir", str(site_dir), "--json").stdout)
    assert [(r["plan_hash"], r["decision"], r["actor"]) for r in listed] == [
        (PLAN, "approved", "operator"), (PLAN, "revoked", "dpo"),
    ]
    table = invoke("approvals", "--site-dir", str(site_dir))
    assert table.exit_code == 0 and "[/] ok" in table.stdout
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert not store.is_approved(PLAN)

"""``tessera site events``: the site's event log, as JSON and as a table."""

from __future__ import annotations

import json
from pathlib import Path

from common.cli_options import login_name
from tests.client_app.cli.conftest import invoke


def test_events_json_shows_ceiling_changes(site_dir: Path) -> None:
    invoke("ceiling", "--site-dir", str(site_dir), "3")
    events = json.loads(invoke("events", "--site-dir", str(site_dir), "--json").stdout)
    changes = [e["details"] for e in events if e["kind"] == "ceiling_changed"]
    assert changes[-1] == {"old": 5.0, "new": 3.0, "actor": login_name()}
    table = invoke("events", "--site-dir", str(site_dir))
    assert table.exit_code == 0 and "ceiling_changed" in table.stdout


def test_events_kind_keeps_only_that_kind(site_dir: Path) -> None:
    invoke("sharing", "--site-dir", str(site_dir), "--importance", "no", "--actor", "dpo")
    everything = json.loads(invoke("events", "--site-dir", str(site_dir), "--json").stdout)
    assert {e["kind"] for e in everything} == {"ceiling_changed", "sharing_changed"}
    only = json.loads(invoke("events", "--site-dir", str(site_dir), "--json",
                             "--kind", "sharing_changed").stdout)
    assert [(e["kind"], e["details"]["actor"]) for e in only] == [("sharing_changed", "dpo")]

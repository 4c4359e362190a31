"""``tessera site sharing``: the site's sharing choices as text and JSON; a refused change
names its option and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, exit_status
from tests.client_app.cli.conftest import invoke


def test_sharing_prints_both_choices_as_text_and_as_one_json_line(site_dir: Path) -> None:
    shown = invoke("sharing", "--site-dir", str(site_dir))
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        "own evaluation counts (leave-one-site-out): shared", "feature importance: shared",
        "smallest shared histogram cell or group: 10 rows"]
    changed = invoke("sharing", "--site-dir", str(site_dir), "--importance", "NO",
                     "--actor", "dpo", "--json")
    assert changed.exit_code == 0, changed.output
    assert changed.stdout == '{"importance": false, "min_cell_count": 10, "own_counts": true}\n'


def test_a_refused_change_names_its_option_and_records_nothing(site_dir: Path) -> None:
    for args, message in (
        (("--importance", "maybe", "--actor", "dpo"), "error: --importance: must be yes or no"),
        (("--own-counts", "no", "--actor", " "), "error: --actor is required to change"),
    ):
        refused = invoke("sharing", "--site-dir", str(site_dir), *args)
        assert refused.exit_code == exit_status(ErrorCode.CONFIG_INVALID)
        assert refused.stderr.startswith(message)
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert store.events(kind="sharing_changed") == []


def test_min_cell_count_is_a_site_setting_recorded_as_a_change(site_dir: Path) -> None:
    refused = invoke("sharing", "--site-dir", str(site_dir), "--min-cell", "0",
                     "--actor", "dpo")
    assert refused.exit_code == 2
    changed = invoke("sharing", "--site-dir", str(site_dir), "--min-cell", "20",
                     "--actor", "dpo", "--json")
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["min_cell_count"] == 20
    blank = invoke("sharing", "--site-dir", str(site_dir), "--min-cell", "5", "--actor", " ")
    assert blank.exit_code == 2

"""``tessera site drift --sharing on|off``: the operator's choice about answering the
coordinator's drift requests, off by default, shown by ``site drift``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.custody.vault import create_vault
from client_app.governance.drift_sharing import drift_shared
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from common.cli_options import login_name
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app

PASSPHRASE = "drift sharing passphrase"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SiteDir:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)
    monkeypatch.setenv("TESSERA_SITE_PASSPHRASE", PASSPHRASE)
    folder = init_site_dir(tmp_path / "site", name="site-a")
    create_vault(folder, PASSPHRASE)
    return folder


def _drift(site: SiteDir, *args: str):
    return CliRunner().invoke(app, ["site", "drift", "--site-dir", str(site.root), *args])


def test_sharing_is_off_until_switched_on_and_each_change_is_an_event(site: SiteDir) -> None:
    with SiteStore.open(site) as store:
        assert not drift_shared(store)
    on = _drift(site, "--sharing", "on", "--actor", "dr-lee")
    assert on.exit_code == 0, on.output
    assert "drift sharing with the coordinator: on" in on.output
    off = _drift(site, "--sharing", "off", "--json")
    assert off.exit_code == 0 and json.loads(off.stdout) == {"shared_with_coordinator": False}
    with SiteStore.open(site) as store:
        changes = [e.details for e in store.events(kind="sharing_changed")]
    assert [(c["what"], c["allowed"], c["actor"]) for c in changes] == [
        ("drift", True, "dr-lee"), ("drift", False, login_name())]  # --actor's default


def test_a_bad_switch_value_is_refused_and_changes_nothing(site: SiteDir) -> None:
    result = _drift(site, "--sharing", "maybe")
    assert result.exit_code != 0 and "--sharing: 'on' or 'off'" in result.output
    with SiteStore.open(site) as store:
        assert not drift_shared(store) and store.events(kind="sharing_changed") == []

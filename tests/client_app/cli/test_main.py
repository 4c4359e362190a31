"""``tessera site init``: a private site folder, idempotent for the same name."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

from client_app.store.folder import SiteDir, open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, exit_status
from tests.client_app.cli.conftest import PLAN, invoke


def test_init_creates_a_private_site_folder(site_dir: Path) -> None:
    site = SiteDir(root=site_dir, name="h1")
    for folder in (site.root, site.keys_dir, site.data_dir, site.audit_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(site.db_path.stat().st_mode) == 0o600
    config = tomllib.loads(site.config_path.read_text(encoding="utf-8"))
    assert config["name"] == "h1" and "created" in config
    assert open_site_dir(site_dir) == SiteDir(root=site_dir, name="h1")


def test_init_again_with_the_same_name_keeps_the_site(site_dir: Path) -> None:
    with SiteStore.open(open_site_dir(site_dir)) as store:
        store.approve(PLAN, actor="ops")
    result = invoke("init", "--site-dir", str(site_dir), "--name", "h1", "--ceiling", "9")
    assert result.exit_code == 0
    assert "privacy ceiling 5" in result.stdout
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert store.is_approved(PLAN)
        assert store.ceiling() == 5.0


def test_init_refuses_a_folder_of_another_site(site_dir: Path) -> None:
    result = invoke("init", "--site-dir", str(site_dir), "--name", "h2")
    assert result.exit_code == exit_status(ErrorCode.PERMISSION_DENIED)
    assert "belongs to site 'h1'" in result.stderr
    assert open_site_dir(site_dir).name == "h1"


def test_init_refuses_a_bad_site_name(tmp_path: Path) -> None:
    result = invoke("init", "--site-dir", str(tmp_path / "x"), "--name", "../evil")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: name must be")
    assert not (tmp_path / "x").exists()


def test_init_prints_json_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "sites" / "h2"
    result = invoke("init", "--site-dir", str(root), "--name", "h2", "--ceiling", "4", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"site": "h2", "site_dir": str(root.absolute()),
                                         "ceiling": 4.0}

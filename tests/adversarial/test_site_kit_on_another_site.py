"""Attack: use one site's kit (or a copy of its installed kit) on another site's folder.

A site kit is that site's identity; it must not act on a folder that belongs to another
site, whether passed with ``--kit`` or copied into the other folder's ``kit/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.custody.kit import import_site_kit
from client_app.custody.vault import create_vault
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from server.provisioning import Federation
from tessera.cli import app
from tests.conftest import TEST_PASSPHRASE

PLAN = "ab" * 32


@pytest.fixture
def sites(fed: Federation, tmp_path: Path) -> dict[str, Path]:
    roots = {}
    for name in ("a", "b"):
        roots[name] = tmp_path / "sites" / name
        import_site_kit(fed.site_kit(name), roots[name])
        create_vault(open_site_dir(roots[name]), TEST_PASSPHRASE)
    return roots


def _approvals(root: Path) -> int:
    with SiteStore.open(open_site_dir(root)) as store:
        return len(store.approvals())


def test_site_a_kit_may_not_approve_on_site_b_folder(fed: Federation,
                                                     sites: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["--kit", str(fed.site_kit("a")), "site", "approve",
                                      PLAN, "--site-dir", str(sites["b"])])
    assert result.exit_code == 10, result.output
    assert "site 'a'" in result.output and "'b'" in result.output
    assert _approvals(sites["b"]) == 0
    with SiteStore.open(open_site_dir(sites["b"])) as store:
        [denial] = store.events(kind="role_denied")
    assert denial.details["party"] == "a"


def test_its_own_folder_still_works(fed: Federation, sites: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["--kit", str(fed.site_kit("a")), "site", "reject",
                                      PLAN, "--site-dir", str(sites["a"])])
    assert result.exit_code == 0, result.output
    assert _approvals(sites["a"]) == 1


def test_a_kit_copied_into_another_sites_folder_is_refused(sites: dict[str, Path]) -> None:
    shutil.rmtree(sites["b"] / "kit")
    shutil.copytree(sites["a"] / "kit", sites["b"] / "kit")
    result = CliRunner().invoke(app, ["site", "approve", PLAN, "--site-dir", str(sites["b"])])
    assert result.exit_code != 0, result.output
    assert _approvals(sites["b"]) == 0


def test_the_desktop_app_refuses_another_sites_kit(fed: Federation,
                                                   sites: dict[str, Path]) -> None:
    from client_app.facade import SiteOperator
    from common.roles import Policy

    with pytest.raises(TesseraError) as err:
        SiteOperator.open(sites["b"], passphrase=TEST_PASSPHRASE, actor="eve",
                          policy=Policy(grants={}), kit=fed.site_kit("a"))
    assert err.value.code is ErrorCode.PERMISSION_DENIED

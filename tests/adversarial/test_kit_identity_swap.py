"""Attack: relabel a kit (edit its kit.toml) to act as another role or another party.

``kit.toml`` is a plain file; the kit's identity is what its keys prove. A kit is accepted as
role R of party P only if the signed manifest inside it gives P the public halves of the
private keys the kit holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.custody.kit import import_site_kit
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from privacy.audit_log import AuditLog
from privacy.manifest import KitInfo, write_kit_info
from server.provisioning import Federation
from tessera.cli import app
from tests.adversarial.conftest import key_of

PLAN = "ab" * 32


def _relabelled(kit: Path, into: Path, *, role: str, party: str, federation: str) -> Path:
    copy = into / "relabelled-kit"
    shutil.copytree(kit, copy)
    write_kit_info(copy, KitInfo(role=role, party=party, federation=federation))
    return copy


def _coordinator_log(fed: Federation, path: Path) -> Path:
    log = AuditLog.create(path, party="coordinator", role="coordinator",
                          signing_key=key_of(fed.coordinator_kit),
                          auditor_public_hex=fed.manifest.auditor_sealing_key)
    log.append("study_run", actor="coordinator", details={})
    log.checkpoint()
    return path


def test_a_site_kit_relabelled_as_the_auditor_is_refused(fed: Federation,
                                                        tmp_path: Path) -> None:
    kit = _relabelled(fed.site_kit("a"), tmp_path, role="auditor", party="auditor",
                      federation=fed.manifest.name)
    log = _coordinator_log(fed, tmp_path / "c.log")
    result = CliRunner().invoke(app, ["--kit", str(kit), "audit", "verify", str(log)])
    assert result.exit_code != 0, result.output
    assert "auditor" in result.output and "manifest" in result.output
    assert not (kit / "audit").exists()  # it never acted (or kept a log) as the auditor


def test_a_site_kit_relabelled_as_another_site_is_refused(fed: Federation,
                                                         tmp_path: Path) -> None:
    site_b = tmp_path / "sites" / "b"
    import_site_kit(fed.site_kit("b"), site_b)
    kit = _relabelled(fed.site_kit("a"), tmp_path, role="site", party="b",
                      federation=fed.manifest.name)
    result = CliRunner().invoke(app, ["--kit", str(kit), "site", "approve", PLAN,
                                      "--site-dir", str(site_b)])
    assert result.exit_code != 0, result.output
    assert "manifest" in result.output
    with SiteStore.open(open_site_dir(site_b)) as store:
        assert store.approvals() == []


def test_an_auditor_kit_relabelled_as_the_coordinator_is_refused(fed: Federation,
                                                                tmp_path: Path) -> None:
    from tessera.access import authorize

    kit = _relabelled(fed.auditor_kit, tmp_path, role="coordinator", party="coordinator",
                      federation=fed.manifest.name)
    with pytest.raises(TesseraError) as err:
        authorize("federation he-context", kit=kit)
    assert err.value.code in (ErrorCode.FINGERPRINT_MISMATCH, ErrorCode.KEY_MISSING)


def test_a_bare_kit_toml_is_no_identity(fed: Federation, tmp_path: Path) -> None:
    kit = tmp_path / "bare-kit"
    kit.mkdir()
    write_kit_info(kit, KitInfo(role="auditor", party="auditor", federation="any"))
    log = _coordinator_log(fed, tmp_path / "c.log")
    result = CliRunner().invoke(app, ["--kit", str(kit), "audit", "verify", str(log)])
    assert result.exit_code != 0, result.output
    assert not (kit / "audit").exists()


def test_the_desktop_app_refuses_a_relabelled_kit(fed: Federation, tmp_path: Path) -> None:
    from client_app.custody.vault import create_vault
    from client_app.facade import SiteOperator
    from common.roles import Policy
    from tests.conftest import TEST_PASSPHRASE

    site_a = tmp_path / "sites" / "a"
    import_site_kit(fed.site_kit("a"), site_a)
    create_vault(open_site_dir(site_a), TEST_PASSPHRASE)
    kit = _relabelled(fed.site_kit("b"), tmp_path, role="auditor", party="auditor",
                      federation=fed.manifest.name)
    with pytest.raises(TesseraError):
        SiteOperator.open(site_a, passphrase=TEST_PASSPHRASE, actor="eve",
                          policy=Policy(grants={}), kit=kit)

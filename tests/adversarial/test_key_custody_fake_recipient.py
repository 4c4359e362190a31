"""Attack: the coordinator adds a site of its own to the manifest to receive the study key.

The coordinator signs the manifest, so a manifest listing an invented site "mallory" (whose
keys the coordinator holds) verifies. The key custodian must see every recipient's name and
key fingerprints and confirm them; the study key is sealed only to confirmed recipients, and
the confirmation (who, to whom) is a site event and so part of the site's audit trail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.custody.vault import SiteVault
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan
from privacy.manifest import load_manifest
from server.provisioning import Federation
from tessera.cli import app
from tests.adversarial.conftest import (
    coordinator_signed,
    forged_site,
    installed_site,
    kit_with_manifest,
)

PLAN = bundled_plan_path("breast_cancer")


@pytest.fixture
def custodian(fed: Federation, tmp_path: Path) -> SiteVault:
    """Site 'a', whose installed manifest the coordinator extended with 'mallory'."""
    mallory = forged_site("mallory", fed.manifest.site("b").node_auth_public_key)
    text = coordinator_signed(fed, (*fed.manifest.sites, mallory))
    kit = kit_with_manifest(fed, "a", text, tmp_path)
    return installed_site(kit, tmp_path / "sites" / "a")


def _keygen(vault: SiteVault, out: Path, *args: str, answer: str | None = None):
    return CliRunner().invoke(app, ["site", "he-keygen", "--site-dir", str(vault.site.root),
                                    "--plan", str(PLAN), "--out", str(out), *args],
                              input=answer)


def _sealed(out: Path) -> list[str]:
    folder = out / "sealed"
    return sorted(p.stem for p in folder.iterdir()) if folder.is_dir() else []


def test_keygen_lists_every_recipient_with_fingerprints_and_seals_nothing_unconfirmed(
        custodian: SiteVault, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _keygen(custodian, out, answer="n\n")
    assert result.exit_code != 0, result.output
    assert _sealed(out) == []
    from privacy.signing import fingerprint

    manifest = load_manifest(custodian.site.root / "kit" / "federation.toml")
    for name in ("b", "mallory"):
        entry = manifest.site(name)
        assert name in result.output
        assert fingerprint(entry.signing_public_key) in result.output
        assert fingerprint(entry.sealing_public_key) in result.output
    assert _sealed(out) == []
    with SiteStore.open(custodian.site) as store:
        assert store.events(kind="he_key_generated") == []


def test_only_the_confirmed_recipients_receive_the_key(custodian: SiteVault,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _keygen(custodian, out, "--recipient", "b", "--yes", "--actor", "alice")
    assert result.exit_code == 0, result.output
    assert _sealed(out) == ["b"]
    with SiteStore.open(custodian.site) as store:
        [confirmed] = store.events(kind="he_recipients_confirmed")
    assert confirmed.details["confirmed_by"] == "alice"
    assert [r["site"] for r in confirmed.details["recipients"]] == ["b"]


def test_the_confirmation_is_in_the_site_audit_trail(fed: Federation, custodian: SiteVault,
                                                    tmp_path: Path) -> None:
    from client_app.governance.audit_trail import log_path, sync
    from privacy.audit_log import read_records
    from privacy.sealing import SealingKey

    answer = "y\n"
    assert _keygen(custodian, tmp_path / "out", "--recipient", "b", answer=answer
                   ).exit_code == 0
    sync(custodian)
    auditor = SealingKey(bytes.fromhex((fed.auditor_kit / "sealing.key").read_text().strip()))
    records = read_records(log_path(custodian), auditor_key=auditor)
    [entry] = [r for r in records if r.header["event"] == "he_recipients_confirmed"]
    assert [r["site"] for r in entry.details["recipients"]] == ["b"]


def test_the_api_seals_only_to_confirmed_recipients(custodian: SiteVault,
                                                   tmp_path: Path) -> None:
    from client_app.custody.he_custody import keygen_and_seal

    manifest = load_manifest(custodian.site.root / "kit" / "federation.toml")
    plan = load_plan(PLAN)
    result = keygen_and_seal(custodian, plan, manifest, tmp_path / "out", recipients=["b"],
                             actor="operator")
    assert sorted(result.sealed) == ["b"]
    with pytest.raises(TesseraError) as err:
        keygen_and_seal(custodian, plan, manifest, tmp_path / "other", recipients=["zed"],
                        actor="operator")
    assert err.value.code is ErrorCode.NOT_FOUND and "'zed'" in err.value.message
    assert not (tmp_path / "other").exists()

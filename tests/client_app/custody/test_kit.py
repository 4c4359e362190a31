"""Importing a site kit: every check passes before anything is written to the site folder."""

from __future__ import annotations

import shutil
import stat
import tomllib
from pathlib import Path

import pytest
import tomli_w
from typer.testing import CliRunner

from client_app.cli.main import app
from client_app.custody.kit import import_site_kit, load_site_identity
from client_app.store.folder import init_site_dir, open_site_dir
from common.errors import ErrorCode, TesseraError
from privacy.signing import SigningKey
from server.provisioning import Federation, init_federation


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return init_federation(tmp_path / "provisioned", name="cardio", sites=["north", "south"])


@pytest.fixture
def kit(fed: Federation, tmp_path: Path) -> Path:
    """A copy of north's kit, free to tamper with."""
    return Path(shutil.copytree(fed.site_kit("north"), tmp_path / "received" / "north"))


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (stat.S_IMODE(p.stat().st_mode),
                                       p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def _tamper_manifest(kit: Path) -> None:
    data = tomllib.loads((kit / "federation.toml").read_text())
    data["sites"][1]["node_auth_public_key"] = data["sites"][0]["node_auth_public_key"]
    (kit / "federation.toml").write_text(tomli_w.dumps(data))


def test_import_installs_the_kit_with_owner_only_private_keys(
        kit: Path, fed: Federation, tmp_path: Path) -> None:
    identity = import_site_kit(kit, tmp_path / "site")
    assert identity.site == "north"
    assert identity.root == (tmp_path / "site" / "kit").absolute()
    assert stat.S_IMODE(identity.root.stat().st_mode) == 0o700
    for path in (identity.node_auth_key, identity.sealing_key, identity.signing_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == (kit / path.name).read_bytes()
    assert identity.ca_certificate.read_bytes() == (kit / "ca.pem").read_bytes()
    assert identity.manifest == fed.manifest
    assert identity.entry.signing_public_key == SigningKey(
        bytes.fromhex(identity.signing_key.read_text().strip())).public_hex


def test_import_records_the_site_name_and_identity_loads_back(kit: Path, tmp_path: Path) -> None:
    import_site_kit(kit, tmp_path / "site")
    assert open_site_dir(tmp_path / "site").name == "north"
    identity = load_site_identity(tmp_path / "site")
    assert identity.site == "north"
    assert identity.manifest.site_names == ("north", "south")
    assert identity.node_auth_public_key.read_text().startswith("ecdsa-sha2-nistp384 ")


@pytest.mark.parametrize("existing", [False, True])
def test_import_refuses_a_tampered_manifest_and_leaves_the_site_folder_unchanged(
        kit: Path, tmp_path: Path, existing: bool) -> None:
    site = tmp_path / "site"
    if existing:
        init_site_dir(site, name="north")
    before = _snapshot(site)
    _tamper_manifest(kit)
    with pytest.raises(TesseraError) as err:
        import_site_kit(kit, site)
    assert err.value.code is ErrorCode.BAD_SIGNATURE
    assert _snapshot(site) == before
    assert site.exists() is existing


@pytest.mark.parametrize("key_file", ["signing.key", "sealing.key", "node-auth.key"])
def test_import_refuses_a_key_that_does_not_match_the_manifest(
        kit: Path, fed: Federation, tmp_path: Path, key_file: str) -> None:
    shutil.copyfile(fed.site_kit("south") / key_file, kit / key_file)
    with pytest.raises(TesseraError) as err:
        import_site_kit(kit, tmp_path / "site")
    assert err.value.code is ErrorCode.FINGERPRINT_MISMATCH
    assert "north" in err.value.message
    assert not (tmp_path / "site").exists()


def test_import_refuses_a_ca_other_than_the_manifests(kit: Path, tmp_path: Path) -> None:
    other = init_federation(tmp_path / "other", name="cardio", sites=["north"])
    shutil.copyfile(other.site_kit("north") / "ca.pem", kit / "ca.pem")
    with pytest.raises(TesseraError) as err:
        import_site_kit(kit, tmp_path / "site")
    assert err.value.code is ErrorCode.FINGERPRINT_MISMATCH


def test_import_refuses_a_wrong_pinned_coordinator_key(
        kit: Path, fed: Federation, tmp_path: Path) -> None:
    with pytest.raises(TesseraError) as err:
        import_site_kit(kit, tmp_path / "site",
                        expected_coordinator_key=SigningKey.generate().public_hex)
    assert err.value.code is ErrorCode.BAD_SIGNATURE
    assert not (tmp_path / "site").exists()
    ok = import_site_kit(kit, tmp_path / "site",
                         expected_coordinator_key=fed.manifest.coordinator_signing_key)
    assert ok.site == "north"


def test_import_refuses_a_coordinator_kit(fed: Federation, tmp_path: Path) -> None:
    with pytest.raises(TesseraError) as err:
        import_site_kit(fed.coordinator_kit, tmp_path / "site")
    assert err.value.code is ErrorCode.CONFIG_INVALID
    assert "not a site kit" in err.value.message


def test_import_refuses_a_folder_that_belongs_to_another_site(
        kit: Path, tmp_path: Path) -> None:
    init_site_dir(tmp_path / "site", name="south")
    before = _snapshot(tmp_path / "site")
    with pytest.raises(TesseraError) as err:
        import_site_kit(kit, tmp_path / "site")
    assert err.value.code is ErrorCode.PERMISSION_DENIED
    assert _snapshot(tmp_path / "site") == before


def test_import_accepts_the_kit_archive(fed: Federation, tmp_path: Path) -> None:
    archive = fed.root / "site-kits" / "south.tar.gz"
    identity = import_site_kit(archive, tmp_path / "site")
    assert identity.site == "south"
    assert identity.signing_key.read_bytes() == (fed.site_kit("south") / "signing.key").read_bytes()


def test_reimport_of_the_same_kit_is_accepted(kit: Path, tmp_path: Path) -> None:
    first = import_site_kit(kit, tmp_path / "site")
    again = import_site_kit(kit, tmp_path / "site")
    assert again == first
    assert sorted(p.name for p in (tmp_path / "site").iterdir() if p.name.startswith(".")) == []


def test_reimport_from_another_coordinator_is_refused(kit: Path, tmp_path: Path) -> None:
    import_site_kit(kit, tmp_path / "site")
    before = _snapshot(tmp_path / "site" / "kit")
    other = init_federation(tmp_path / "other", name="cardio", sites=["north"])
    with pytest.raises(TesseraError) as err:
        import_site_kit(other.site_kit("north"), tmp_path / "site")
    assert err.value.code is ErrorCode.BAD_SIGNATURE
    assert _snapshot(tmp_path / "site" / "kit") == before


def test_identity_of_a_site_without_kit_is_key_missing(tmp_path: Path) -> None:
    init_site_dir(tmp_path / "site", name="north")
    with pytest.raises(TesseraError) as err:
        load_site_identity(tmp_path / "site")
    assert err.value.code is ErrorCode.KEY_MISSING


def test_site_import_kit_cli_prints_a_summary(kit: Path, fed: Federation, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "import-kit", str(kit), "--site-dir", str(tmp_path / "site"),
        "--coordinator-key", fed.manifest.coordinator_signing_key])
    assert result.exit_code == 0, result.output
    assert "site north of federation cardio imported" in result.output
    assert fed.manifest.coordinator_signing_key in result.output
    assert (kit / "signing.key").read_text().strip() not in result.output


def test_site_import_kit_cli_refuses_a_bad_signature_with_a_clear_error(
        kit: Path, tmp_path: Path) -> None:
    _tamper_manifest(kit)
    result = CliRunner().invoke(app, ["import-kit", str(kit), "--site-dir", str(tmp_path / "s")])
    assert result.exit_code == 7
    assert "error: federation-manifest: signature does not verify" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_site_import_kit_cli_refuses_mismatched_keys(
        kit: Path, fed: Federation, tmp_path: Path) -> None:
    shutil.copyfile(fed.site_kit("south") / "signing.key", kit / "signing.key")
    result = CliRunner().invoke(app, ["import-kit", str(kit), "--site-dir", str(tmp_path / "s")])
    assert result.exit_code == 7
    assert "error: the signing key in the kit does not match" in result.output


def test_identities_share_one_verified_manifest_and_a_changed_one_is_checked_again(
        fed: Federation, tmp_path: Path) -> None:
    north = import_site_kit(fed.site_kit("north"), tmp_path / "north")
    south = import_site_kit(fed.site_kit("south"), tmp_path / "south")
    assert north.manifest is south.manifest  # the same text, parsed and verified once
    _tamper_manifest(north.root)
    with pytest.raises(TesseraError) as err:
        load_site_identity(tmp_path / "north")
    assert err.value.code is ErrorCode.BAD_SIGNATURE
    assert load_site_identity(tmp_path / "south").manifest is south.manifest

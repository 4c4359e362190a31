"""A kit is who its keys prove it is: kit.toml against the signed manifest inside the kit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from privacy.kit_identity import held_public_keys, verify_kit
from privacy.manifest import KitInfo, write_kit_info
from privacy.signing import SigningKey
from server.provisioning import Federation, init_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "out", name="kits",
                           sites=["north", "south"], archives=False)


def test_every_provisioned_kit_proves_its_role_and_party(fed: Federation) -> None:
    for kit, role, party in ((fed.coordinator_kit, "coordinator", "coordinator"),
                             (fed.auditor_kit, "auditor", "auditor"),
                             (fed.site_kit("north"), "site", "north")):
        verified = verify_kit(kit)
        assert (verified.role, verified.party) == (role, party)
        assert verified.manifest.name == "kits"


def test_a_site_kit_proves_itself_with_its_node_key_alone(fed: Federation,
                                                         tmp_path: Path) -> None:
    """An installed site moves its signing and sealing keys into its vault."""
    kit = tmp_path / "kit"
    shutil.copytree(fed.site_kit("north"), kit)
    (kit / "signing.key").unlink()
    (kit / "sealing.key").unlink()
    assert set(held_public_keys(kit)) == {"node-authentication"}
    assert verify_kit(kit).party == "north"


def test_a_replaced_key_file_is_refused(fed: Federation, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    shutil.copytree(fed.coordinator_kit, kit)
    (kit / "signing.key").chmod(0o600)
    (kit / "signing.key").write_text(SigningKey.generate().raw.hex() + "\n")
    with pytest.raises(TesseraError) as err:
        verify_kit(kit)
    assert err.value.code is ErrorCode.FINGERPRINT_MISMATCH
    assert "signing key" in err.value.message and "the coordinator" in err.value.message


def test_a_kit_without_any_proving_key_is_refused(fed: Federation, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    shutil.copytree(fed.auditor_kit, kit)
    for name in ("signing.key", "sealing.key"):
        (kit / name).unlink()
    with pytest.raises(TesseraError) as err:
        verify_kit(kit)
    assert err.value.code is ErrorCode.KEY_MISSING


@pytest.mark.parametrize(("role", "party", "federation", "code"), [
    ("site", "nowhere", "kits", ErrorCode.PERMISSION_DENIED),
    ("site", "north", "other-federation", ErrorCode.CONFIG_INVALID),
    ("auditor", "north", "kits", ErrorCode.CONFIG_INVALID),
])
def test_kit_toml_that_the_manifest_does_not_back_is_refused(
        fed: Federation, tmp_path: Path, role: str, party: str, federation: str,
        code: ErrorCode) -> None:
    kit = tmp_path / "kit"
    shutil.copytree(fed.site_kit("north"), kit)
    write_kit_info(kit, KitInfo(role=role, party=party, federation=federation))
    with pytest.raises(TesseraError) as err:
        verify_kit(kit)
    assert err.value.code is code


def test_a_kit_without_its_manifest_is_refused(tmp_path: Path) -> None:
    write_kit_info(tmp_path, KitInfo(role="auditor", party="auditor", federation="f"))
    with pytest.raises(TesseraError) as err:
        verify_kit(tmp_path)
    assert err.value.code is ErrorCode.NOT_FOUND and "manifest" in err.value.message

"""Who calls (proven by a kit) and which access policy applies: one home for CLI and app."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from client_app.custody.caller import (
    POLICY_ENV_VAR,
    caller_identity,
    load_access_policy,
    require_own_folder,
)
from client_app.custody.kit import import_site_kit
from client_app.store.folder import init_site_dir
from common.errors import ErrorCode, TesseraError
from common.roles import KIT_ROLES, Role, kit_role
from privacy.signed_policy import sign_policy
from privacy.signing import SigningKey
from server.provisioning import Federation, init_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "out", name="callers",
                           sites=["north", "south"], archives=False)


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)


def test_each_kit_kind_has_one_role() -> None:
    assert dict(KIT_ROLES) == {"coordinator": Role.COORDINATOR, "site": Role.SITE_OPERATOR,
                               "auditor": Role.AUDITOR}
    with pytest.raises(TesseraError) as err:
        kit_role("root")
    assert err.value.code is ErrorCode.CONFIG_INVALID


def test_the_caller_is_the_kit_given_else_the_folders_kit_else_its_operator(
        fed: Federation, tmp_path: Path) -> None:
    site = tmp_path / "north"
    import_site_kit(fed.site_kit("north"), site)
    auditor = caller_identity(kit=fed.auditor_kit, site_dir=site)
    assert auditor is not None and (auditor.role, auditor.party) == (Role.AUDITOR, "auditor")
    installed = caller_identity(kit=None, site_dir=site)
    assert installed is not None and (installed.role, installed.party) == (
        Role.SITE_OPERATOR, "north")
    dev = init_site_dir(tmp_path / "dev", name="dev").root
    bare = caller_identity(kit=None, site_dir=dev)
    assert bare is not None and (bare.role, bare.party, bare.kit) == (
        Role.SITE_OPERATOR, "dev", None)
    assert caller_identity(kit=None, site_dir=None) is None


def test_a_folder_holding_a_non_site_kit_is_refused(fed: Federation, tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "north", name="north").root
    shutil.copytree(fed.auditor_kit, site / "kit")
    with pytest.raises(TesseraError) as err:
        caller_identity(kit=None, site_dir=site)
    assert err.value.code is ErrorCode.PERMISSION_DENIED


def test_a_site_kit_acts_only_on_its_own_folder(fed: Federation, tmp_path: Path) -> None:
    south = init_site_dir(tmp_path / "south", name="south").root
    identity = caller_identity(kit=fed.site_kit("north"), site_dir=south)
    assert identity is not None
    with pytest.raises(TesseraError) as err:
        require_own_folder(identity, south)
    assert err.value.code is ErrorCode.PERMISSION_DENIED
    require_own_folder(identity, tmp_path / "not-yet-a-site")  # nothing to protect yet
    auditor = caller_identity(kit=fed.auditor_kit, site_dir=south)
    assert auditor is not None
    require_own_folder(auditor, south)  # auditors read any site


def test_the_bundled_policy_applies_without_an_override() -> None:
    policy = load_access_policy()
    assert policy.allowed("site approve", Role.SITE_OPERATOR)
    assert not policy.allowed("site approve", Role.AUDITOR)


def test_a_signed_override_applies_to_a_caller_of_that_federation(
        fed: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('format = 1\n[commands]\n"site approve" = ["auditor"]\n')
    key = SigningKey(bytes.fromhex((fed.coordinator_kit / "signing.key").read_text().strip()))
    sign_policy(path, signer=key, federation="callers")
    monkeypatch.setenv(POLICY_ENV_VAR, str(path))
    assert load_access_policy(kit=fed.auditor_kit).allowed("site approve", Role.AUDITOR)
    other = init_federation(tmp_path / "other", name="callers", sites=["x"], archives=False)
    with pytest.raises(TesseraError) as err:
        load_access_policy(kit=other.auditor_kit)  # same name, another coordinator
    assert err.value.code is ErrorCode.BAD_SIGNATURE
    with pytest.raises(TesseraError) as err:
        load_access_policy()
    assert err.value.code is ErrorCode.CONFIG_INVALID and POLICY_ENV_VAR in err.value.message

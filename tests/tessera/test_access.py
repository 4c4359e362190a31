"""Role-based access: each kit's role is denied what the policy does not grant, clearly."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from client_app.custody.kit import import_site_kit
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path
from common.roles import Role
from privacy.signed_policy import sign_policy
from privacy.signing import SigningKey
from server.provisioning import Federation, init_federation
from tessera.access import (
    DENIAL_EVENT,
    DENIALS_FILE,
    KIT_ENV_VAR,
    POLICY_ENV_VAR,
    authorize,
    load_policy,
)
from tessera.cli import app

PLAN = "ab" * 32
PERMISSION_DENIED = 10


@pytest.fixture(autouse=True)
def _no_ambient_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return init_federation(tmp_path / "fed", name="f", sites=["h1", "h2"], archives=False)


@pytest.fixture
def site(fed: Federation, tmp_path: Path) -> Path:
    root = tmp_path / "sites" / "h1"
    import_site_kit(fed.site_kit("h1"), root)
    return root


def _tessera(*args: str | Path, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _denials_in_store(site: Path) -> list[dict[str, object]]:
    with SiteStore.open(open_site_dir(site)) as store:
        return [e.details for e in store.events(kind=DENIAL_EVENT)]


def _denials_in_kit(kit: Path) -> list[dict[str, object]]:
    path = kit / DENIALS_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def _approvals(site: Path) -> int:
    with SiteStore.open(open_site_dir(site)) as store:
        return len(store.approvals())


def test_auditor_is_denied_site_approve_and_the_denial_is_a_site_event(
    fed: Federation, site: Path
) -> None:
    result = _tessera("--kit", fed.auditor_kit, "site", "approve", PLAN, "--site-dir", site)
    assert result.exit_code == PERMISSION_DENIED, result.output
    assert ("error: role 'auditor' may not run 'site approve' "
            "(policy grants it to: site_operator)") in result.output
    assert "Traceback" not in result.output
    assert _approvals(site) == 0
    assert _denials_in_store(site) == [
        {"command": "site approve", "role": "auditor", "party": "auditor"}]


def test_coordinator_kit_is_denied_site_approve(fed: Federation, site: Path) -> None:
    result = _tessera("--kit", fed.coordinator_kit, "site", "approve", PLAN, "--site-dir", site)
    assert result.exit_code == PERMISSION_DENIED, result.output
    assert "role 'coordinator' may not run 'site approve'" in result.output
    assert _approvals(site) == 0
    assert _denials_in_store(site) == [
        {"command": "site approve", "role": "coordinator", "party": "coordinator"}]


def test_auditor_kit_from_the_environment_is_denied_federation_init(
    fed: Federation, tmp_path: Path
) -> None:
    out = tmp_path / "fed2"
    result = _tessera("federation", "init", "--name", "g", "--sites", "a", "--out", out,
                      env={KIT_ENV_VAR: str(fed.auditor_kit)})
    assert result.exit_code == PERMISSION_DENIED, result.output
    assert ("role 'auditor' may not run 'federation init' "
            "(policy grants it to: coordinator)") in result.output
    assert not out.exists()
    [denial] = _denials_in_kit(fed.auditor_kit)
    assert denial["kind"] == DENIAL_EVENT and denial["command"] == "federation init"
    assert (denial["role"], denial["party"]) == ("auditor", "auditor")


def test_site_operator_kit_is_denied_federation_init(fed: Federation, tmp_path: Path) -> None:
    out = tmp_path / "fed2"
    result = _tessera("--kit", fed.site_kit("h2"), "federation", "init", "--name", "g",
                      "--sites", "a", "--out", out)
    assert result.exit_code == PERMISSION_DENIED, result.output
    assert "role 'site_operator' may not run 'federation init'" in result.output
    assert "site_operator 'h2'" in result.output
    assert not out.exists()
    assert [d["party"] for d in _denials_in_kit(fed.site_kit("h2"))] == ["h2"]


def test_auditor_may_read_the_budget_of_an_imported_site(fed: Federation, site: Path) -> None:
    result = _tessera("--kit", fed.auditor_kit, "site", "budget", "--site-dir", site)
    assert result.exit_code == 0, result.output
    assert "privacy ceiling" in result.output
    assert _denials_in_store(site) == []


def test_installed_site_kit_makes_the_caller_its_site_operator(site: Path) -> None:
    # Rejecting needs no received plan: the decision is recorded once the caller may act.
    result = _tessera("site", "reject", PLAN, "--site-dir", site)
    assert result.exit_code == 0, result.output
    assert _approvals(site) == 1


def test_site_folder_without_a_kit_counts_as_its_site_operator(tmp_path: Path) -> None:
    root = tmp_path / "dev-site"
    assert _tessera("site", "init", "--site-dir", root, "--name", "dev").exit_code == 0
    result = _tessera("site", "reject", PLAN, "--site-dir", root)
    assert result.exit_code == 0, result.output
    assert _approvals(root) == 1


def test_federation_init_without_a_kit_provisions_as_the_coordinator(tmp_path: Path) -> None:
    out = tmp_path / "new-fed"
    result = _tessera("federation", "init", "--name", "g", "--sites", "a", "--out", out,
                      "--no-archives")
    assert result.exit_code == 0, result.output
    assert (out / "coordinator-kit" / "kit.toml").is_file()


def _signed_policy(fed: Federation, path: Path, text: str) -> Path:
    """A policy override signed by the federation's coordinator (the only kind honoured)."""
    path.write_text(text, encoding="utf-8")
    key = SigningKey(bytes.fromhex((fed.coordinator_kit / "signing.key").read_text().strip()))
    sign_policy(path, signer=key, federation=fed.manifest.name)
    return path


def test_command_missing_from_the_policy_is_denied_and_recorded(
    fed: Federation, site: Path, tmp_path: Path
) -> None:
    policy = _signed_policy(fed, tmp_path / "policy.toml",
                            'format = 1\n[commands]\n"site approve" = ["site_operator"]\n')
    result = _tessera("site", "budget", "--site-dir", site, env={POLICY_ENV_VAR: str(policy)})
    assert result.exit_code == PERMISSION_DENIED, result.output
    assert "error: 'site budget' is not in the access policy: denied" in result.output
    with pytest.raises(TesseraError) as info:
        authorize("site frobnicate", kit=fed.auditor_kit, site_dir=site)
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert "'site frobnicate' is not in the access policy: denied" in info.value.message
    assert [d["command"] for d in _denials_in_store(site)] == ["site budget", "site frobnicate"]


def test_command_run_without_an_identity_says_how_to_provide_one(tmp_path: Path) -> None:
    result = _tessera("audit", "verify", tmp_path / "site.log")
    assert result.exit_code == PERMISSION_DENIED, result.output
    assert "'audit verify' needs to know who you are" in result.output
    assert "tessera --kit DIR audit verify" in result.output and KIT_ENV_VAR in result.output


def test_policy_with_an_unknown_role_is_refused_naming_the_entry(
    fed: Federation, tmp_path: Path
) -> None:
    policy = _signed_policy(fed, tmp_path / "policy.toml",
                            'format = 1\n[commands]\n"study validate" = ["superuser"]\n')
    result = _tessera("--kit", fed.coordinator_kit, "study", "validate",
                      bundled_plan_path("breast_cancer"), env={POLICY_ENV_VAR: str(policy)})
    assert result.exit_code == 2, result.output
    assert "'study validate'" in result.output and "'superuser'" in result.output
    assert "Traceback" not in result.output


def test_a_folder_that_is_not_a_kit_is_a_clear_error(tmp_path: Path) -> None:
    result = _tessera("--kit", tmp_path, "study", "validate", bundled_plan_path("breast_cancer"))
    assert result.exit_code == 4, result.output
    assert "is not a Tessera kit (no kit.toml)" in result.output


def test_help_works_for_everyone(fed: Federation, tmp_path: Path) -> None:
    denied_kit = _tessera("--kit", fed.auditor_kit, "site", "approve", "--help")
    assert denied_kit.exit_code == 0 and "PLAN_HASH" in denied_kit.output
    broken_kit = {KIT_ENV_VAR: str(tmp_path / "missing")}
    assert _tessera("site", "--help", env=broken_kit).exit_code == 0
    assert _tessera("federation", "init", "--help", env=broken_kit).exit_code == 0


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    paths: list[str] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append(" ".join((*prefix, name)))
    return paths


def test_every_cli_command_is_in_the_bundled_policy() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, click.Group)
    paths = _command_paths(root)
    assert "site approve" in paths and "federation init" in paths
    policy = load_policy()
    missing = [p for p in paths if not policy.knows(p)]
    assert missing == [], f"add these commands to tessera/roles.toml: {missing}"


EXPECTED = {
    "site approve": {Role.SITE_OPERATOR},
    "site ceiling": {Role.SITE_OPERATOR},
    "site import-kit": {Role.SITE_OPERATOR},
    "site budget": {Role.SITE_OPERATOR, Role.AUDITOR},
    "site events": {Role.SITE_OPERATOR, Role.AUDITOR},
    "federation init": {Role.COORDINATOR},
    "study validate": set(Role),
    "demo": set(Role),
    "audit verify": {Role.AUDITOR},
}


def test_bundled_policy_denies_each_role_what_it_does_not_grant() -> None:
    policy = load_policy()
    for command, expected in EXPECTED.items():
        assert policy.roles_for(command) == expected, command
    for command, granted in policy.grants.items():
        for role in set(Role) - granted:
            with pytest.raises(TesseraError) as info:
                policy.check(command, role)
            assert info.value.exit_code == PERMISSION_DENIED
            assert info.value.message.startswith(f"role '{role.value}' may not run '{command}'")
    assert policy.role_without_kit("federation init") is Role.COORDINATOR


def test_the_kit_a_command_takes_is_its_identity(fed: Federation, tmp_path: Path) -> None:
    package = tmp_path / "missing-package.bin"
    args = ("federation", "he-context", package, "--coordinator-dir", tmp_path / "coord")
    denied = _tessera(*args, "--kit", fed.auditor_kit)
    assert denied.exit_code == PERMISSION_DENIED, denied.output
    assert "role 'auditor' may not run 'federation he-context'" in denied.output
    # The command's own --kit is more specific than an ambient TESSERA_KIT.
    passed = _tessera(*args, "--kit", fed.coordinator_kit,
                      env={KIT_ENV_VAR: str(fed.auditor_kit)})
    assert passed.exit_code != PERMISSION_DENIED, passed.output
    assert "may not run" not in passed.output

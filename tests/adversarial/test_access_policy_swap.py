"""Attack: swap the access policy with ``TESSERA_POLICY`` to grant a role more.

The access policy decides who may do what; an override is honoured only when the
federation's coordinator signed it (a detached ``<policy>.sig`` beside it, checked against
the coordinator key in the signed manifest of the caller's kit). Anything else is refused
with a clear message, never silently replaced by the bundled policy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.custody.kit import import_site_kit
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from server.provisioning import Federation
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app
from tests.adversarial.conftest import key_of

PLAN = "ab" * 32
GENEROUS = ('format = 1\n[commands]\n"site reject" = ["site_operator", "auditor"]\n'
            '"site budget" = ["site_operator", "auditor"]\n')


@pytest.fixture(autouse=True)
def _no_ambient_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)


@pytest.fixture
def site(fed: Federation, tmp_path: Path) -> Path:
    root = tmp_path / "sites" / "a"
    import_site_kit(fed.site_kit("a"), root)
    return root


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "generous.toml"
    path.write_text(GENEROUS, encoding="utf-8")
    return path


def _decide_as_auditor(fed: Federation, site: Path, policy: Path):
    return CliRunner().invoke(app, ["--kit", str(fed.auditor_kit), "site", "reject", PLAN,
                                    "--site-dir", str(site)], env={POLICY_ENV_VAR: str(policy)})


def _approvals(site: Path) -> int:
    with SiteStore.open(open_site_dir(site)) as store:
        return len(store.approvals())


def test_an_unsigned_policy_override_is_refused(fed: Federation, site: Path,
                                                policy: Path) -> None:
    result = _decide_as_auditor(fed, site, policy)
    assert result.exit_code != 0, result.output
    assert POLICY_ENV_VAR in result.output and "not signed" in result.output
    assert _approvals(site) == 0


def test_a_policy_signed_by_another_key_is_refused(fed: Federation, site: Path,
                                                   policy: Path) -> None:
    from privacy.signed_policy import sign_policy

    sign_policy(policy, signer=key_of(fed.site_kit("a")), federation=fed.manifest.name)
    result = _decide_as_auditor(fed, site, policy)
    assert result.exit_code != 0, result.output
    assert "coordinator" in result.output
    assert _approvals(site) == 0


def test_a_policy_edited_after_signing_is_refused(fed: Federation, site: Path,
                                                  policy: Path) -> None:
    from privacy.signed_policy import sign_policy

    policy.write_text('format = 1\n[commands]\n"site budget" = ["auditor"]\n')
    sign_policy(policy, signer=key_of(fed.coordinator_kit), federation=fed.manifest.name)
    policy.write_text(GENEROUS, encoding="utf-8")
    result = _decide_as_auditor(fed, site, policy)
    assert result.exit_code != 0, result.output
    assert _approvals(site) == 0


def test_a_policy_signed_by_the_coordinator_is_honoured(fed: Federation, site: Path,
                                                        policy: Path) -> None:
    from privacy.signed_policy import sign_policy

    sign_policy(policy, signer=key_of(fed.coordinator_kit), federation=fed.manifest.name)
    result = _decide_as_auditor(fed, site, policy)
    assert result.exit_code == 0, result.output
    assert _approvals(site) == 1


def test_an_override_with_no_manifest_to_check_it_against_is_refused(
        tmp_path: Path, policy: Path) -> None:
    root = tmp_path / "dev-site"
    assert CliRunner().invoke(app, ["site", "init", "--site-dir", str(root), "--name", "dev"]
                              ).exit_code == 0
    result = CliRunner().invoke(app, ["site", "approve", PLAN, "--site-dir", str(root)],
                                env={POLICY_ENV_VAR: str(policy)})
    assert result.exit_code != 0, result.output
    assert POLICY_ENV_VAR in result.output
    assert _approvals(root) == 0

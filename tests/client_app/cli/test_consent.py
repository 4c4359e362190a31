"""``tessera site consent ...`` through the real CLI (and the access policy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.custody.kit import import_site_kit
from client_app.custody.vault import unlock_vault
from client_app.governance.consent import history
from client_app.store.folder import open_site_dir
from common.cli_options import login_name
from server.provisioning import init_federation
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app
from tests.conftest import TEST_PASSPHRASE

NEW_COMMANDS = ("site consent withdraw", "site consent grant", "site consent import",
                "site consent history", "site consent status", "site models", "site evaluate")


@pytest.fixture(autouse=True)
def _no_ambient_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)


def _tessera(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sites" / "h1"
    result = _tessera("site", "init", "--site-dir", root, "--name", "h1")
    assert result.exit_code == 0, result.output
    return root


def _status(site_dir: Path, study: str) -> str:
    result = _tessera("site", "consent", "status", "--site-dir", site_dir, "--study", study)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_withdraw_grant_status_and_history(site_dir: Path) -> None:
    result = _tessera("site", "consent", "withdraw", "MRN-1", "MRN-2", "MRN-1", "--site-dir",
                      site_dir, "--actor", "alice", "--note", "phone call")
    assert result.exit_code == 0, result.output
    assert "consent withdrawn for 2 patient(s) in every study" in result.output
    assert "MRN" not in result.output
    result = _tessera("site", "consent", "withdraw", "MRN-3", "--site-dir", site_dir,
                      "--actor", "alice", "--scope", "cardio")
    assert "in study cardio" in result.output
    assert _status(site_dir, "cardio") == "study cardio: 3 patient(s) withdrawn"
    assert _status(site_dir, "onco") == "study onco: 2 patient(s) withdrawn"
    result = _tessera("site", "consent", "grant", "MRN-2", "--site-dir", site_dir,
                      "--actor", "bob")
    assert result.exit_code == 0 and "consent granted for 1 patient(s)" in result.output
    assert _status(site_dir, "onco") == "study onco: 1 patient(s) withdrawn"

    result = _tessera("site", "consent", "history", "--site-dir", site_dir, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["action"], r["patient_id"], r["scope"]) for r in rows] == [
        ("grant", "MRN-2", "*"), ("withdraw", "MRN-3", "cardio"), ("withdraw", "MRN-2", "*"),
        ("withdraw", "MRN-1", "*")]
    result = _tessera("site", "consent", "history", "--site-dir", site_dir, "--scope", "cardio")
    assert result.exit_code == 0 and "MRN-3" in result.output and "MRN-1" not in result.output


def test_import_reports_counts_and_a_bad_file_changes_nothing(site_dir: Path,
                                                             tmp_path: Path) -> None:
    good = tmp_path / "optout.csv"
    good.write_text("patient_id\nP1\nP2\nP2\n", encoding="utf-8")
    result = _tessera("site", "consent", "import", good, "--site-dir", site_dir,
                      "--actor", "clerk")
    assert result.exit_code == 0, result.output
    assert "consent withdrawn for 2 patient(s) in every study (0 already withdrawn)" \
        in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("name,mrn\nx,SECRET-ID\n", encoding="utf-8")
    result = _tessera("site", "consent", "import", bad, "--site-dir", site_dir,
                      "--actor", "clerk")
    assert result.exit_code == 3
    assert "error: bad.csv: a CSV opt-out list needs a 'patient_id' column" in result.output
    assert "SECRET" not in result.output and "Traceback" not in result.output
    vault = unlock_vault(open_site_dir(site_dir), TEST_PASSPHRASE)
    assert sorted(e.patient_id for e in history(vault)) == ["P1", "P2"]


def test_the_actor_defaults_to_the_login_name_and_a_blank_one_is_refused(
        site_dir: Path) -> None:
    result = _tessera("site", "consent", "withdraw", "P1", "--site-dir", site_dir, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"action": "withdrawn", "scope": "*", "changed": 1,
                                         "unchanged": 0, "batch": None}
    vault = unlock_vault(open_site_dir(site_dir), TEST_PASSPHRASE)
    assert [e.actor for e in history(vault)] == [login_name()]
    result = _tessera("site", "consent", "grant", "P1", "--site-dir", site_dir, "--actor", " ")
    assert result.exit_code == 2 and "error: actor" in result.output


def test_every_new_command_is_in_the_policy_and_consent_history_is_operator_only(
    tmp_path: Path,
) -> None:
    from common.roles import Role
    from tessera.access import load_policy

    policy = load_policy()
    for command in NEW_COMMANDS:
        assert policy.roles_for(command) == {Role.SITE_OPERATOR}, command
    fed = init_federation(tmp_path / "fed", name="f", sites=["h1"], archives=False)
    root = tmp_path / "sites" / "h1"
    import_site_kit(fed.site_kit("h1"), root)
    result = _tessera("--kit", fed.auditor_kit, "site", "consent", "history", "--site-dir", root)
    assert result.exit_code == 10
    assert "may not run 'site consent history'" in result.output
    result = _tessera("site", "consent", "history", "--site-dir", root, "--json")
    assert "may not run" not in result.output  # the installed site kit: its operator
    assert result.exit_code == 8 and "no keystore" in result.output  # not set up yet

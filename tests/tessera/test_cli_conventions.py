"""The conventions every ``tessera`` command follows, checked on the whole command tree: help
on every argument and option, an example in every group's help, ``--json`` on every command
that prints a result, ``--actor`` defaulting to the login name, ``--kit`` meaning one thing.

The tree is walked as click builds it, so a command added later is checked too; the few
exceptions are listed, each with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import typer
from typer.testing import CliRunner

from common.cli_options import login_name
from common.plan import bundled_plan_path, plan_hash
from privacy.audit_log import AuditLog
from privacy.kit_identity import verify_kit
from privacy.signing import SigningKey
from tessera.cli import app

#: Commands that take no ``--json``, and why. Everything else that runs must accept it.
NO_JSON = {
    # long-running services: they stream logs until stopped and print no result
    "site agent": "runs until stopped",
    "site run": "runs until stopped",
    "audit serve": "runs until stopped",
    "model serve": "runs until stopped",
    # opens the desktop app
    "site gui": "a window, not a printed result",
    # streams progress for minutes; its result is the JSON report it writes (--report)
    "demo": "its result is the JSON report file",
    # owned by the study-run commands (tessera/study_cli.py): 'study follow' streams,
    # 'study plan' and 'study report' write files
    "study plan": "writes a plan file (study_cli)",
    "study follow": "streams progress (study_cli)",
    "study report": "writes a report file (study_cli)",
    # owned by the serving commands (serving/cli.py)
    "model predict": "writes predictions to --output (serving)",
    "model card": "writes a file (serving)",
    "model export": "writes a file (serving)",
    "model token create": "prints a secret token once (serving)",
}

#: Parameters without help text, and why (none today).
NO_HELP: dict[tuple[str, str], str] = {}

#: Command groups whose help has no example yet, and why (none today).
NO_EXAMPLE: dict[str, str] = {}


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def _tree() -> list[tuple[str, click.Command]]:
    return list(_walk(typer.main.get_command(app)))


def _leaves() -> list[tuple[str, click.Command]]:
    return [(p, c) for p, c in _tree() if not isinstance(c, click.Group)]


def _options(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in p.opts}


def test_every_argument_and_option_has_help_text() -> None:
    missing = [f"{path}: {param.name}" for path, command in _tree()
               for param in command.params
               if not (getattr(param, "help", None) or "").strip()
               and not getattr(param, "hidden", False)
               and (path, param.name) not in NO_HELP]
    assert missing == []


def test_argument_help_reaches_the_help_page() -> None:
    result = CliRunner().invoke(app, ["site", "import-kit", "--help"])
    assert result.exit_code == 0
    assert "The site kit from the coordinator" in result.stdout


def test_every_command_group_help_has_an_example() -> None:
    missing = [path or "tessera" for path, command in _tree()
               if isinstance(command, click.Group)
               and "Example: tessera " not in (command.help or "")
               and path not in NO_EXAMPLE]
    assert missing == []


def test_every_command_that_prints_a_result_accepts_json() -> None:
    leaves = dict(_leaves())
    missing = [path for path, command in leaves.items()
               if "--json" not in _options(command) and path not in NO_JSON]
    assert missing == []
    stale = [path for path in NO_JSON if path in leaves and "--json" in _options(leaves[path])]
    assert stale == [], "these accept --json now: take them off the allow-list"


def test_every_actor_option_defaults_to_the_login_name() -> None:
    actors = {path: param for path, command in _leaves() for param in command.params
              if "--actor" in param.opts}
    assert {"site approve", "site ceiling", "site consent withdraw", "site dataset register",
            "site he-keygen", "site sharing", "site gui"} <= set(actors)
    wrong = [path for path, param in actors.items()
             if param.required or param.get_default(click.Context(click.Command("x")))
             != login_name()]
    assert wrong == []


def test_the_desktop_app_takes_the_same_actor_and_kit_options() -> None:
    gui = dict(_leaves())["site gui"]
    assert {"--actor", "--operator", "--kit"} <= _options(gui)


def test_the_demo_counts_sites_with_num_sites_and_warns_on_the_old_spelling(
        tmp_path: Path) -> None:
    demo = dict(_leaves())["demo"]
    assert "--num-sites" in _options(demo)
    names = CliRunner().invoke(app, ["demo", "--sites", "a,b", "--workdir", str(tmp_path / "w")])
    assert names.exit_code == 2
    assert "--num-sites" in names.stderr and "Traceback" not in names.output
    assert not (tmp_path / "w").exists()


# -- real invocations whose output must parse as JSON ------------------------------------


def _json(*args: str) -> object:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_study_validate_json_gives_the_plan_hash() -> None:
    from common.plan import load_plan

    path = bundled_plan_path("breast_cancer")
    doc = _json("study", "validate", str(path), "--json")
    assert doc == {"study": "breast_cancer", "valid": True,
                   "plan_hash": plan_hash(load_plan(path)), "budget": doc["budget"]}
    assert isinstance(doc["budget"], list)


def test_federation_init_and_audit_json(tmp_path: Path) -> None:
    fed = _json("federation", "init", "--name", "f", "--sites", "north,south", "--out",
                str(tmp_path / "fed"), "--no-archives", "--json")
    assert isinstance(fed, dict)
    assert fed["federation"] == "f" and sorted(fed["site_kits"]) == ["north", "south"]
    assert Path(fed["auditor_kit"]).is_dir()
    key = SigningKey(bytes.fromhex((Path(fed["site_kits"]["north"]) / "signing.key")
                                   .read_text().strip()))
    manifest = verify_kit(Path(fed["auditor_kit"])).manifest
    log = AuditLog.create(tmp_path / "north.log", party="north", role="site", signing_key=key,
                          auditor_public_hex=manifest.auditor_sealing_key)
    log.append("study_approved", actor="operator", details={})
    log.checkpoint()
    verified = _json("--kit", fed["auditor_kit"], "audit", "verify", str(tmp_path / "north.log"),
                     "--json")
    assert isinstance(verified, dict)
    assert (verified["ok"], verified["party"], verified["role"], verified["records"]) == (
        True, "north", "site", 1)
    stored = _json("audit", "checkpoint", str(tmp_path / "north.log"), "--out",
                   str(tmp_path / "cp.json"), "--kit", fed["auditor_kit"], "--json")
    assert isinstance(stored, dict) and stored["tree_size"] == 1


def test_audit_verify_json_names_a_file_that_is_not_a_log(tmp_path: Path) -> None:
    fed = _json("federation", "init", "--name", "f", "--sites", "north", "--out",
                str(tmp_path / "fed"), "--no-archives", "--json")
    notes = tmp_path / "notes.csv"
    notes.write_text("name,age\nx,1\n")
    assert isinstance(fed, dict)
    result = CliRunner().invoke(app, ["audit", "verify", str(notes), "--kit",
                                      fed["auditor_kit"], "--json"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["fault"] == "not_an_audit_log"
    assert doc["message"].startswith("notes.csv is not a Tessera audit log")


def test_data_split_json_lists_each_file(tmp_path: Path) -> None:
    doc = _json("data", "split", "--study", "breast_cancer", "--sites", "a,b", "--out",
                str(tmp_path / "data"), "--json")
    assert isinstance(doc, dict)
    assert [f["site"] for f in doc["files"]] == ["a", "b"]
    assert all(Path(f["path"]).is_file() and f["rows"] > 0 for f in doc["files"])


def test_every_command_takes_kit_after_it_with_the_meaning_it_has_before_it(
        tmp_path: Path) -> None:
    fed = _json("federation", "init", "--name", "f", "--sites", "north", "--out",
                str(tmp_path / "fed"), "--no-archives", "--json")
    assert isinstance(fed, dict)
    coordinator = tmp_path / "coordinator"
    nobody = CliRunner().invoke(app, ["model", "list", "--coordinator-dir", str(coordinator)])
    assert nobody.exit_code == 10 and "needs to know who you are" in nobody.stderr
    before = CliRunner().invoke(app, ["--kit", fed["coordinator_kit"], "model", "list",
                                      "--coordinator-dir", str(coordinator), "--json"])
    after = CliRunner().invoke(app, ["model", "list", "--coordinator-dir", str(coordinator),
                                     "--json", "--kit", fed["coordinator_kit"]])
    assert "needs to know who you are" not in after.output
    assert (after.exit_code, after.stdout) == (before.exit_code, before.stdout)
    auditor = CliRunner().invoke(app, ["model", "token", "revoke", "t1", "--coordinator-dir",
                                       str(coordinator), "--kit", fed["auditor_kit"]])
    assert auditor.exit_code == 10  # the auditor's kit is the auditor, wherever it is given
    assert "you are auditor" in auditor.stderr
    helped = CliRunner().invoke(app, ["study", "list", "--help"])
    assert "--kit" in helped.stdout

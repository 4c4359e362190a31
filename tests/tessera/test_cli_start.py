"""The front of the ``tessera`` command: version, help, shell completion, and a light start.

Help and version never load the heavy libraries: torch, Opacus, TenSEAL, Qt, Flower and
scikit-learn take seconds to import, so only the commands that train, encrypt, open the app
or start processes import them, inside the command. Each import check runs in a fresh
interpreter, so nothing an earlier test imported can hide a regression.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from typer.testing import CliRunner

from tessera import __version__
from tessera.cli import app

HEAVY = ("torch", "opacus", "tenseal", "PySide6", "flwr", "sklearn", "dp_accounting")

_IMPORT_ONLY = """
import json, sys
import tessera.cli
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""

_EVERY_HELP = """
import json, sys
import click
import typer
from typer.testing import CliRunner
from tessera.cli import app

root = typer.main.get_command(app)
paths = [()]
def walk(group, prefix):
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            paths.append(path)
            walk(command, path)
        else:
            paths.append(path)
walk(root, ())
runner = CliRunner()
failed = []
for path in paths:
    result = runner.invoke(app, [*path, "--help"])
    if result.exit_code != 0:
        failed.append(" ".join(path))
loaded = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"helps": len(paths), "failed": failed, "loaded": loaded}}))
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_importing_the_cli_loads_no_heavy_library() -> None:
    loaded = json.loads(_run(_IMPORT_ONLY.format(heavy=HEAVY)))
    assert loaded == [], f"import tessera.cli pulled in {loaded}: import them inside commands"


#: What the CLI's own command modules load only inside the commands that use them: the
#: governance, dataset and node-control work, the study-plan schema's users, gRPC, the kit
#: checks of the access policy (they open the site store), the prediction service's request
#: validation (numpy) and the simulation's site agents and coordinator.
DEFERRED = ("client_app.governance.studies", "client_app.governance.budget",
            "client_app.governance.consent", "client_app.datasets.versions",
            "client_app.node.controller", "tessera.audit_service", "grpc",
            "client_app.custody.caller", "serving.validation", "client_app.agent.site_agent",
            "server.coordinator")


def test_the_cli_modules_defer_the_work_of_their_commands() -> None:
    loaded = json.loads(_run(_IMPORT_ONLY.format(heavy=DEFERRED)))
    assert loaded == [], f"import tessera.cli pulled in {loaded}: import them inside commands"


#: The database layer (the site store, the model registry, the release and token stores open
#: it), numpy and the study-plan schema (pydantic): more than half a second of start-up that
#: no --help needs. The command modules import the stores, folders, vaults and plans inside
#: the commands that open them.
STORES_AND_SCHEMAS = ("sqlalchemy", "sqlmodel", "alembic", "numpy", "pydantic", "common.sql",
                  "common.plan", "tessera.study_ops",
                  "client_app.store.site_store", "client_app.store.folder",
                  "client_app.custody.vault", "server.registry", "serving.releases",
                  "serving.tokens")


def test_importing_the_cli_loads_no_store_or_plan_schema() -> None:
    loaded = json.loads(_run(_IMPORT_ONLY.format(heavy=STORES_AND_SCHEMAS)))
    assert loaded == [], f"import tessera.cli pulled in {loaded}: import them inside commands"



def test_the_help_of_every_command_loads_no_heavy_library() -> None:
    report = json.loads(_run(_EVERY_HELP.format(heavy=HEAVY)))
    assert report["helps"] > 30  # every group and command was asked, not just the root
    assert report["failed"] == []
    assert report["loaded"] == [], (
        f"--help pulled in {report['loaded']}: import them inside the commands that need them")


def test_version_comes_from_one_place() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"tessera {__version__}"
    assert metadata.version("tessera") == __version__  # the package metadata reads the same


def test_dash_h_is_help_on_every_level() -> None:
    for args in (["-h"], ["site", "-h"], ["site", "consent", "-h"], ["study", "validate", "-h"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output


def test_shell_completion_is_offered_and_completes_commands() -> None:
    assert "--install-completion" in CliRunner().invoke(app, ["--help"]).output
    tessera = Path(sys.executable).with_name("tessera")
    env = {**os.environ, "_TESSERA_COMPLETE": "complete_bash",
           "COMP_WORDS": "tessera site con", "COMP_CWORD": "2"}
    done = subprocess.run([str(tessera)], env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["consent"]

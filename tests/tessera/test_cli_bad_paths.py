"""A bad path never gives a traceback: a folder where a file is expected says "is a
directory", a missing file says "not found", each with a non-zero exit and nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.plan import bundled_plan_path
from server.provisioning import Federation, init_federation
from tessera.cli import app

PLAN = str(bundled_plan_path("breast_cancer"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paths")
    site = root / "sites" / "h1"
    mp = pytest.MonkeyPatch()
    mp.setenv("TESSERA_SITE_PASSPHRASE", "bad-path passphrase")
    try:
        made = CliRunner().invoke(app, ["site", "init", "--site-dir", str(site), "--name", "h1"])
    finally:
        mp.undo()
    assert made.exit_code == 0, made.output
    fed: Federation = init_federation(root / "fed", name="paths", sites=["h1"], archives=False)
    afile = root / "afile.csv"
    afile.write_text("x\n1\n")
    return {"root": root, "site": site, "auditor": fed.auditor_kit, "coordinator":
            fed.coordinator_kit, "file": afile}


def _commands(w: dict[str, Path], bad: str) -> list[list[str]]:
    site, aud, afile = str(w["site"]), str(w["auditor"]), str(w["file"])
    return [
        ["study", "validate", bad],
        ["site", "study", "receive", bad, "--site-dir", site],
        ["site", "consent", "import", bad, "--site-dir", site],
        ["site", "dataset", "check", bad, "--plan", PLAN],
        ["site", "dataset", "check", afile, "--plan", bad],
        ["site", "dataset", "register", bad, "--plan", PLAN, "--site-dir", site],
        ["site", "add-data", afile, "--plan", bad, "--site-dir", site],
        ["--kit", aud, "audit", "verify", bad],
        ["--kit", aud, "audit", "verify", afile, "--checkpoint", bad],
        ["audit", "show", bad, "--key", str(w["auditor"] / "sealing.key"), "--kit", aud],
        ["audit", "checkpoint", bad, "--out", str(w["root"] / "cp.json"), "--kit", aud],
        ["federation", "he-context", bad, "--kit", str(w["coordinator"]),
         "--coordinator-dir", str(w["root"] / "coordinator")],
    ]


def _check(args: list[str], words: str) -> None:
    result = CliRunner().invoke(app, args)
    shown = " ".join(args)
    assert result.exit_code not in (0, 1), f"{shown}: {result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert "Traceback" not in result.output, shown
    assert result.stderr.startswith("error: ") and words in result.stderr, \
        f"{shown}: {result.stderr}"


def test_a_folder_where_a_file_is_expected_says_is_a_directory(world: dict[str, Path]) -> None:
    for args in _commands(world, str(world["root"])):
        _check(args, "is a directory")


def test_a_missing_file_says_not_found(world: dict[str, Path]) -> None:
    for args in _commands(world, str(world["root"] / "nowhere.csv")):
        _check(args, "not found")

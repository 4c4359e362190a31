"""The ``tessera`` command line: clear errors and exit codes at the boundary."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from common.plan import bundled_plan_path
from tessera.cli import app

runner = CliRunner()


def test_study_validate_prints_the_plan_hash() -> None:
    result = runner.invoke(app, ["study", "validate", str(bundled_plan_path("breast_cancer"))])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()[-1]) == 64


def test_study_validate_shows_the_budget_split() -> None:
    result = runner.invoke(app, ["study", "validate", str(bundled_plan_path("breast_cancer"))])
    budget = [line for line in result.output.splitlines() if "budget:" in line]
    assert [line.split("budget: ")[1].split(" (")[0].split(":")[0] for line in budget[:-1]] == [
        "row counts", "statistics", "evaluation", "feature importance"]
    assert "whole run spends epsilon 3" in " ".join(result.output.split())


def test_a_plan_whose_releases_leave_no_training_budget_is_refused(tmp_path: Path) -> None:
    text = bundled_plan_path("breast_cancer").read_text()
    greedy = tmp_path / "greedy.toml"
    greedy.write_text(text.replace("every_round = false", "every_round = true")
                      .replace("noise_multiplier = 3.0\nimportance",
                               "noise_multiplier = 1.0\nimportance"))
    result = runner.invoke(app, ["study", "validate", str(greedy)])
    assert result.exit_code == 2, result.output
    assert "no budget is left for training" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_broken_plan_is_refused_naming_the_field(tmp_path: Path) -> None:
    text = bundled_plan_path("breast_cancer").read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace("target_epsilon = 3.0", "target_epsilon = -1"))
    result = runner.invoke(app, ["study", "validate", str(broken)])
    assert result.exit_code == 2
    assert "privacy.target_epsilon" in result.output
    assert "Traceback" not in result.output


def test_demo_with_a_broken_plan_starts_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[study]\nname = 'x'\n")
    work = tmp_path / "work"
    result = runner.invoke(app, ["demo", "--study", str(broken), "--workdir", str(work)])
    assert result.exit_code == 2
    assert "study plan" in result.output
    assert not work.exists()


def test_unknown_bundled_study_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--study", "nope", "--workdir", str(tmp_path / "w")])
    assert result.exit_code != 0
    assert "nope" in result.output


def test_demo_paths_become_absolute_for_child_processes(tmp_path: Path, monkeypatch) -> None:
    """Relative --workdir (as `make demo` passes it) must reach Flower processes absolute."""
    import tessera.demo as demo

    seen = {}

    def fake_build(workdir, plan, **kwargs):
        seen["workdir"] = workdir
        raise demo.TesseraError(demo.ErrorCode.CONFIG_INVALID, "stop here")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo.local_federation, "build", fake_build)
    result = runner.invoke(app, ["demo", "--workdir", "rel-work"])
    assert result.exit_code == 2
    assert seen["workdir"].is_absolute()
    assert seen["workdir"] == tmp_path / "rel-work"

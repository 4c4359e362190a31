"""``tessera study plan|submit|status|list|cancel|resume|report`` on a coordinator folder, without
a SuperLink: plan files, refusals, and the states and report read from a run's files. (Runs
on real processes: test_federation_by_hand.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.plan import bundled_plan_path, load_plan, override, plan_hash, plan_to_toml
from common.workdir import CoordinatorDir
from server.provisioning import Federation, init_federation
from tessera.cli import app
from tessera.coordinator_ops import install_kit

PLAN = override(load_plan(bundled_plan_path("breast_cancer")), rounds=2)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "f", name="t", sites=["a", "b"],
                           archives=False)


@pytest.fixture
def coord(fed: Federation, tmp_path: Path) -> CoordinatorDir:
    layout = CoordinatorDir(tmp_path / "coord")
    install_kit(layout, fed.coordinator_kit)
    path = layout.plan_path(plan_hash(PLAN))
    path.parent.mkdir(parents=True)
    path.write_text(plan_to_toml(PLAN), encoding="utf-8")
    return layout


def _as_coordinator(fed: Federation, *args: object):
    return CliRunner().invoke(app, ["--kit", str(fed.coordinator_kit), *map(str, args)])


def _run(coord: CoordinatorDir, run_id: str, *, result: dict | None = None,
         at: str = "2026-01-01T00:00:00+00:00") -> None:
    run = coord.run(run_id)
    run.root.mkdir(parents=True)
    run.submission_path.write_text(json.dumps({
        "run_id": run_id, "study": PLAN.name, "plan_hash": plan_hash(PLAN), "rounds": 2,
        "custodian": "a", "submitted_at": at}))
    events = [{"event": "round_evaluated", "round": 1, "metrics": {}, "seconds": 1.0}]
    run.progress_path.write_text("".join(json.dumps(e) + "\n" for e in events))
    if result is not None:
        run.result_path.write_text(json.dumps(result))


def _completed() -> dict:
    rounds = [{"round": r, "participating_sites": ["a", "b"], "refused_sites": [],
               "rejected_envelopes": [], "bytes_up": {}, "bytes_down": {}, "site_metrics": {},
               "seconds": 1.0, "aggregation_seconds": 0.1,
               "metrics": {"accuracy": 0.9, "auc": 0.95}} for r in (1, 2)]
    return {"run_id": "11", "plan_hash": plan_hash(PLAN), "status": "completed",
            "rounds": rounds, "final": {"accuracy": 0.9, "auc": 0.95},
            "sites": [{"name": "a", "examples": 200, "epsilon_spent": 1.5, "delta": 1e-5}],
            "model": {"study": PLAN.name, "version": 1, "sha256": "ab" * 32}}


def test_study_plan_writes_the_plan_the_sites_will_approve(tmp_path: Path) -> None:
    out = tmp_path / "plan.toml"
    result = CliRunner().invoke(app, ["study", "plan", "breast_cancer", "--rounds", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    digest = result.output.strip().splitlines()[-1]
    assert digest == plan_hash(PLAN) == plan_hash(load_plan(out))
    into_folder = CliRunner().invoke(app, ["study", "plan", "breast_cancer", "--out",
                                           str(tmp_path)])
    assert into_folder.exit_code == 2 and "is a folder" in into_folder.output


def test_study_plan_declares_attesters(tmp_path: Path) -> None:
    out = tmp_path / "plan.toml"
    result = CliRunner().invoke(app, ["study", "plan", "breast_cancer", "--attesters", "3",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_plan(out).federation.attesters == 3
    assert "attesters = 3" in out.read_text(encoding="utf-8")
    plain = CliRunner().invoke(app, ["study", "plan", "diabetes", "--attesters", "2", "--out",
                                     str(tmp_path / "x.toml")])
    assert plain.exit_code == 0, plain.output  # diabetes is encrypted too


def test_submit_refuses_when_the_coordinator_is_not_running(fed: Federation,
                                                            coord: CoordinatorDir,
                                                            tmp_path: Path) -> None:
    result = _as_coordinator(fed, "study", "submit", "--study", "breast_cancer",
                             "--coordinator-dir", coord.root)
    assert result.exit_code == 11, result.output
    assert "coordinator is not running" in result.output
    both = _as_coordinator(fed, "study", "submit", bundled_plan_path("breast_cancer"),
                           "--study", "breast_cancer", "--coordinator-dir", coord.root)
    assert both.exit_code == 2 and "one" in both.output
    assert not coord.runs_dir.exists()


def test_unknown_and_malformed_run_ids_are_refused(fed: Federation,
                                                   coord: CoordinatorDir) -> None:
    unknown = _as_coordinator(fed, "study", "status", "42", "--coordinator-dir", coord.root)
    assert unknown.exit_code == 4 and "no run 42" in unknown.output
    bad = _as_coordinator(fed, "study", "status", "../x", "--coordinator-dir", coord.root)
    assert bad.exit_code == 2 and "not a run id" in bad.output
    none = _as_coordinator(fed, "study", "report", "latest", "--coordinator-dir", coord.root)
    assert none.exit_code == 4


def test_states_come_from_the_runs_files(fed: Federation, coord: CoordinatorDir) -> None:
    _run(coord, "11", result=_completed(), at="2026-01-01T00:00:00+00:00")
    _run(coord, "12", at="2026-01-02T00:00:00+00:00")  # no result, coordinator not running
    listed = _as_coordinator(fed, "study", "list", "--coordinator-dir", coord.root, "--json")
    assert listed.exit_code == 0, listed.output
    states = [(r["run_id"], r["state"], r["rounds_done"]) for r in json.loads(listed.output)]
    assert states == [("11", "completed", 1), ("12", "interrupted", 1)]
    latest = _as_coordinator(fed, "study", "status", "latest", "--coordinator-dir",
                             coord.root, "--json")
    assert json.loads(latest.output)["run_id"] == "12"
    finished = _as_coordinator(fed, "study", "cancel", "11", "--coordinator-dir", coord.root)
    assert finished.exit_code == 2 and "already finished" in finished.output
    cancelled = _as_coordinator(fed, "study", "cancel", "12", "--coordinator-dir", coord.root)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output
    assert json.loads(coord.run("12").result_path.read_text())["status"] == "cancelled"


def test_cancel_json_gives_the_cancelled_runs_status(fed: Federation,
                                                     coord: CoordinatorDir) -> None:
    _run(coord, "13")  # no result, coordinator not running: interrupted
    result = _as_coordinator(fed, "study", "cancel", "13", "--coordinator-dir", coord.root,
                             "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["run_id"], doc["state"]) == ("13", "cancelled")
    assert list(doc) == sorted(doc)


def test_json_and_follow_together_are_refused_before_anything_runs(
        fed: Federation, coord: CoordinatorDir) -> None:
    _run(coord, "12")
    before = {p: p.read_bytes() for p in coord.root.rglob("*") if p.is_file()}
    for args in (("submit", "--study", "breast_cancer"), ("resume", "12")):
        result = _as_coordinator(fed, "study", *args, "--coordinator-dir", coord.root,
                                 "--json", "--follow")
        assert result.exit_code == 2, result.output
        assert "--json and --follow" in result.output and result.stdout == ""
    assert {p: p.read_bytes() for p in coord.root.rglob("*") if p.is_file()} == before


def test_report_writes_the_demos_report_and_a_summary(fed: Federation, coord: CoordinatorDir,
                                                      tmp_path: Path) -> None:
    _run(coord, "11", result=_completed())
    out = tmp_path / "report.json"
    result = _as_coordinator(fed, "study", "report", "11", "--coordinator-dir", coord.root,
                             "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["status"] == "completed" and report["study"]["plan_hash"] == plan_hash(PLAN)
    assert report["engine"]["supernodes"] == 2 and report["engine"]["run_id"] == "11"
    assert report["privacy"]["he_params"]["key_custodian"] == "a"
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert "round 2: a, b" in result.output and "v1 registered" in result.output
    pending = _as_coordinator(fed, "study", "report", "latest", "--coordinator-dir",
                              coord.root, "--out", tmp_path)
    assert pending.exit_code == 2 and "is a folder" in pending.output


def test_resume_refuses_finished_unknown_and_unreachable_runs(fed: Federation,
                                                              coord: CoordinatorDir) -> None:
    _run(coord, "11", result=_completed())
    _run(coord, "12")  # no result, coordinator not running: interrupted
    before = {p: p.read_bytes() for p in coord.root.rglob("*") if p.is_file()}
    finished = _as_coordinator(fed, "study", "resume", "11", "--coordinator-dir", coord.root)
    assert finished.exit_code == 2, finished.output
    assert "only an interrupted run resumes" in finished.output
    unknown = _as_coordinator(fed, "study", "resume", "42", "--coordinator-dir", coord.root)
    assert unknown.exit_code == 4 and "no run 42" in unknown.output
    stopped = _as_coordinator(fed, "study", "resume", "12", "--coordinator-dir", coord.root)
    assert stopped.exit_code == 11 and "coordinator is not running" in stopped.output
    assert {p: p.read_bytes() for p in coord.root.rglob("*") if p.is_file()} == before

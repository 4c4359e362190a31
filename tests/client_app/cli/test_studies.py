"""``tessera site study ...`` through the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.plan import bundled_plan_path, load_plan, override, plan_hash, plan_to_toml
from server.provisioning import init_federation
from tessera.cli import app

V1 = load_plan(bundled_plan_path("breast_cancer"))
V2 = override(V1, target_epsilon=5.0)


def _invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    root = tmp_path / "h1"
    result = _invoke("site", "init", "--site-dir", root, "--name", "h1")
    assert result.exit_code == 0, result.output
    return root


def _plan_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _receive(site_dir: Path, path: Path):
    return _invoke("site", "study", "receive", path, "--site-dir", site_dir)


def test_receive_then_list_shows_the_pending_plan(site_dir: Path, tmp_path: Path) -> None:
    result = _receive(site_dir, bundled_plan_path("breast_cancer"))
    assert result.exit_code == 0, result.output
    assert f"plan {plan_hash(V1)} (pending)" in result.stdout
    _receive(site_dir, _plan_file(tmp_path, "v2.toml", plan_to_toml(V2)))
    listed = _invoke("site", "study", "list", "--site-dir", site_dir, "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["plan_hash"], r["status"], r["source"]) for r in rows] == [
        (plan_hash(V2), "pending", "file"), (plan_hash(V1), "pending", "file")]
    assert set(rows[0]) == {"plan_hash", "study", "status", "received_at", "source"}
    table = _invoke("site", "study", "list", "--site-dir", site_dir)
    assert table.exit_code == 0 and plan_hash(V1) in table.stdout and "pending" in table.stdout


def test_approve_by_hash_changes_the_listed_status(site_dir: Path) -> None:
    _receive(site_dir, bundled_plan_path("breast_cancer"))
    assert _invoke("site", "approve", plan_hash(V1), "--site-dir", site_dir).exit_code == 0
    rows = json.loads(_invoke("site", "study", "list", "--site-dir", site_dir, "--json").stdout)
    assert rows[0]["status"] == "approved"


def test_show_prints_the_summary(site_dir: Path) -> None:
    _receive(site_dir, bundled_plan_path("breast_cancer"))
    shown = _invoke("site", "study", "show", plan_hash(V1), "--site-dir", site_dir)
    assert shown.exit_code == 0, shown.output
    for text in ("status: pending", "model:", "logreg", "rounds:", "3 (3 local epoch(s)",
                 "target epsilon 3 at delta 1e-05", "release policy:", "at least 2 site(s)"):
        assert text in shown.stdout
    as_json = json.loads(_invoke("site", "study", "show", plan_hash(V1), "--site-dir",
                                 site_dir, "--json").stdout)
    assert as_json["summary"]["target_epsilon"] == 3.0
    assert as_json["summary"]["features"] == V1.dataset.features


def test_diff_names_the_changed_field(site_dir: Path, tmp_path: Path) -> None:
    _receive(site_dir, bundled_plan_path("breast_cancer"))
    _receive(site_dir, _plan_file(tmp_path, "v2.toml", plan_to_toml(V2)))
    diff = _invoke("site", "study", "diff", plan_hash(V2), "--site-dir", site_dir)
    assert diff.exit_code == 0, diff.output
    assert f"against {plan_hash(V1)[:12]}: 1 field(s) changed" in diff.stdout
    assert "privacy.target_epsilon: 3.0 -> 5.0" in diff.stdout
    assert "+target_epsilon = 5.0" in diff.stdout
    first = _invoke("site", "study", "diff", plan_hash(V1), "--site-dir", site_dir, "--json")
    assert json.loads(first.stdout)["previous_hash"] is None


def test_unknown_hash_exits_4_and_a_malformed_one_2(site_dir: Path) -> None:
    for command in ("show", "diff"):
        unknown = _invoke("site", "study", command, "ab" * 32, "--site-dir", site_dir)
        assert unknown.exit_code == 4, unknown.output
        assert unknown.stderr.startswith("error: no study plan abababababab received")
        malformed = _invoke("site", "study", command, "xyz", "--site-dir", site_dir)
        assert malformed.exit_code == 2
        assert "64 hexadecimal" in malformed.stderr


def test_invalid_plan_file_is_refused_and_nothing_stored(site_dir: Path,
                                                          tmp_path: Path) -> None:
    bad = _plan_file(tmp_path, "bad.toml", plan_to_toml(V1).replace("rounds = 3", "rounds = 0"))
    result = _receive(site_dir, bad)
    assert result.exit_code == 2
    assert "training.rounds" in result.stderr and "Traceback" not in result.output
    missing = _receive(site_dir, tmp_path / "nope.toml")
    assert missing.exit_code == 4
    assert json.loads(_invoke("site", "study", "list", "--site-dir", site_dir,
                              "--json").stdout) == []
    with SiteStore.open(open_site_dir(site_dir)) as store:
        assert store.events(kind="study_plan_received") == []


def test_auditor_may_list_but_not_receive_plans(site_dir: Path, tmp_path: Path) -> None:
    kit = init_federation(tmp_path / "fed", name="f", sites=["s"], archives=False).auditor_kit
    result = CliRunner().invoke(app, ["--kit", str(kit), "site", "study", "receive",
                                      str(bundled_plan_path("breast_cancer")),
                                      "--site-dir", str(site_dir)])
    assert result.exit_code == 10, result.output
    assert "site study receive" in result.stderr
    listed = CliRunner().invoke(app, ["--kit", str(kit), "site", "study", "list",
                                      "--site-dir", str(site_dir), "--json"])
    assert listed.exit_code == 0, listed.output

"""``tessera simulate --workers``: the virtual sites spread over worker processes run the
same study as in one process, each site's agent in exactly one worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan
from common.workdir import WorkDir
from privacy.audit_log import verify_log
from tessera.cli import app
from tessera.sim_workers import WorkerGrid
from tessera.simulate import simulate


@pytest.mark.slow
def test_simulate_over_two_workers_completes_with_every_site_audited(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(app, ["simulate", "--sites", "4", "--rounds", "1",
                                      "--attesters", "2", "--workers", "2",
                                      "--workdir", str(tmp_path / "work"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["status"] == "completed"
    assert [(r["round"], r["sites"], r["refused_sites"]) for r in doc["rounds"]] == [(1, 4, 0)]
    sites = sorted((tmp_path / "work" / "sites").iterdir())
    assert len(sites) == 4
    for site in sites:  # each worker's agents wrote their sites' trails, one writer each
        report = verify_log(WorkDir(tmp_path / "work").site(site.name).audit_log)
        assert report.ok and report.records > 5, (site.name, report)


def test_simulate_refuses_zero_workers(tmp_path: Path) -> None:
    plan = load_plan(bundled_plan_path("breast_cancer"))
    with pytest.raises(TesseraError) as err:
        simulate(plan, sites=2, workdir=tmp_path / "work", workers=0)
    assert err.value.code is ErrorCode.CONFIG_INVALID and "workers" in err.value.message
    assert not (tmp_path / "work").exists()


def test_worker_grid_refuses_zero_workers() -> None:
    with pytest.raises(TesseraError, match="workers"):
        WorkerGrid([], passphrase="x", workers=0)

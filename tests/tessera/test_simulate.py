"""``tessera simulate`` runs a whole study over virtual sites in one process, with DP and HE
on, and reports seconds and bytes per round."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from common.errors import TesseraError
from tessera.cli import app
from tessera.simulate import site_rows


def test_site_rows_give_every_site_every_label_without_repeats() -> None:
    y = np.array([0] * 30 + [1] * 70)
    parts = site_rows(y, sites=50, rows_per_site=20, seed=1)
    assert len(parts) == 50
    for rows in parts:
        assert len(np.unique(rows)) == len(rows) >= 20
        assert (y[rows] == 0).sum() >= 5 and (y[rows] == 1).sum() >= 5
    assert len({tuple(r) for r in parts}) > 1  # independent draws


def test_site_rows_refuse_too_few_or_too_many_rows() -> None:
    y = np.array([0] * 30 + [1] * 70)
    with pytest.raises(TesseraError, match="rows_per_site"):
        site_rows(y, sites=2, rows_per_site=5, seed=0)
    with pytest.raises(TesseraError, match="rows_per_site"):
        site_rows(y, sites=2, rows_per_site=101, seed=0)


@pytest.mark.slow
def test_simulate_runs_five_encrypted_dp_sites_and_reports_rounds(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(app, ["simulate", "--sites", "5", "--rounds", "2",
                                      "--workdir", str(tmp_path / "work"), "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert json.loads(result.stdout) == doc  # --json prints the --out document, only it
    assert doc["status"] == "completed"
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    for rnd in doc["rounds"]:
        assert rnd["sites"] == 5 and rnd["refused_sites"] == 0
        # Every site uploads at least one seeded ciphertext of the plan's parameters: one
        # polynomial of 4096 coefficients over 87 data bits, about 44.5 KB compressed.
        assert rnd["bytes_up"] >= 5 * 40_000
        assert rnd["seconds"] > 0
    assert doc["seconds_per_round"] > 0
    assert "per round" in result.stderr  # the progress lines move to stderr


def test_simulate_refuses_an_unknown_study(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--sites", "2", "--study", "no_such_study",
                                      "--workdir", str(tmp_path / "work")])
    assert result.exit_code != 0
    assert not (tmp_path / "work").exists()

"""Model cards from a real in-process study: Markdown, HTML, PNG plots and `tessera model card`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from client_app.agent import SiteAgent
from client_app.vault import unlock_vault
from common.plan import bundled_plan_path, load_plan, override
from server.coordinator import run_study
from server.model_card import fmt, write_card
from server.provisioning import init_federation
from tessera import local_federation
from tessera.cli import app
from tessera.inprocess import InProcessGrid

PASSPHRASE = "correct horse battery staple"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One diabetes study (1 round, 3 sites); returns the coordinator folder and result."""
    work = tmp_path_factory.mktemp("card") / "work"
    plan = override(load_plan(bundled_plan_path("diabetes")), rounds=1)
    fed = local_federation.build(work, plan, sites=3, ceilings={}, passphrase=PASSPHRASE,
                                 tls=False)
    agents = [SiteAgent(unlock_vault(site, PASSPHRASE)) for site in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="c", expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    on_disk = json.loads((fed.coordinator_dir / "runs" / "c" / "result.json").read_text())
    return fed.coordinator_dir, on_disk


def _cell(text: str, name: str) -> str:
    """The value next to ``name`` in a two-column Markdown table row."""
    row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    return row.split("|")[2].strip()


def test_card_files_plots_and_numbers(study: tuple[Path, dict[str, Any]],
                                      tmp_path: Path) -> None:
    coordinator, result = study
    out = write_card(coordinator, "diabetes", 1, tmp_path / "card")
    assert out == tmp_path / "card"
    page = (out / "card.html").read_text(encoding="utf-8")
    for name in ("roc.png", "calibration.png", "fairness.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, name
        assert f'<img src="{name}"' in page
    markdown = (out / "card.md").read_text(encoding="utf-8")
    final = result["final"]
    assert _cell(markdown, "auc") == fmt(final["auc"]) == f"{final['auc']:.4f}"
    assert _cell(markdown, "accuracy") == fmt(final["accuracy"])
    dpd = fmt(final["fairness"]["demographic_parity_difference"])
    assert _cell(markdown, "demographic_parity_difference") == dpd
    for value in (fmt(final["auc"]), fmt(final["accuracy"]), dpd):
        assert f"<td>{value}</td>" in page
    for text in (markdown, page):
        assert "research model" in text
        assert result["plan_hash"] in text
        assert "binned" in text and "differentially private" in text
        assert "progression_high" in text and "sex" in text
        assert "min_auc" in text and "passed" in text
    assert "Above-median disease progression" in page
    assert "<script" not in page


def test_card_command_writes_default_folder_and_checks_roles(
        study: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    coordinator, _ = study
    kits = init_federation(tmp_path / "fed", name="f", sites=["h1"], archives=False)
    runner = CliRunner()
    ok = runner.invoke(app, ["--kit", str(kits.auditor_kit), "model", "card", "diabetes", "1",
                             "--coordinator-dir", str(coordinator)])
    assert ok.exit_code == 0, ok.output
    folder = coordinator / "cards" / "diabetes-v1"
    assert str(folder) in ok.output
    assert {"card.md", "card.html", "roc.png", "calibration.png"} <= {
        p.name for p in folder.iterdir()}
    missing = runner.invoke(app, ["--kit", str(kits.coordinator_kit), "model", "card",
                                  "diabetes", "9", "--coordinator-dir", str(coordinator),
                                  "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0
    assert "error: model 'diabetes' version 9 is not registered" in missing.output
    assert not (tmp_path / "x").exists()
    denied = runner.invoke(app, ["--kit", str(kits.site_kit("h1")), "model", "card",
                                 "diabetes", "1", "--coordinator-dir", str(coordinator)])
    assert denied.exit_code != 0


def test_card_command_refuses_a_folder_without_registry(tmp_path: Path) -> None:
    kits = init_federation(tmp_path / "fed", name="f", sites=["h1"], archives=False)
    result = CliRunner().invoke(app, ["--kit", str(kits.coordinator_kit), "model", "card",
                                      "diabetes", "1", "--coordinator-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "no coordinator.db there" in result.output
    assert not (tmp_path / "coordinator.db").exists()

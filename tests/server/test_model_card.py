"""Model cards from a real in-process study: Markdown, HTML, PNG plots and `tessera model card`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from common.plan import bundled_plan_path, load_plan, override
from server.coordinator import run_study
from server.model_card import CardContext, card_html, card_markdown, fmt, write_card
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
    for name in ("roc.png", "calibration.png", "fairness.png", "importance.png"):
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
        for name, check in result["kpi_gates"]["checks"].items():  # each gate and verdict
            assert name in text
            assert ("passed" if check["passed"] else "failed") in text
    assert "Above-median disease progression" in page
    assert "<script" not in page
    importance = result["feature_importance"]
    assert importance == result["model"]["lineage"]["feature_importance"]
    assert set(importance) == set(load_plan(bundled_plan_path("diabetes")).dataset.features)
    section = markdown.split("## Feature importance")[1].split("\n## ")[0]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in section.splitlines() if line.startswith("| ")][1:]
    by_rank = sorted(importance, key=lambda f: importance[f]["rank"])
    assert rows == [[f, fmt(importance[f]["auc_drop"]), fmt(importance[f]["log_loss_increase"])]
                    for f in by_rank]
    # Under DP only the noisy log-loss rises are released (no AUC drops), ranked by them.
    assert all(importance[f]["auc_drop"] is None for f in by_rank)
    rises = [importance[f]["log_loss_increase"] for f in by_rank]
    assert rises == sorted(rises, reverse=True)  # most important first
    assert "Differentially private importance" in section
    assert "## Leave-one-site-out evaluation\n\nNot run." in markdown
    if result["kpi_gates"]["promotable"]:
        assert "Release verdict (registry): promotable." in markdown
    else:  # a one-round model may miss the fairness gate; the card says so, with the reason
        assert "Release verdict (registry): not promotable." in markdown
        assert result["kpi_gates"]["reasons"][0].split(":")[0] in markdown
    columns = load_plan(bundled_plan_path("diabetes")).dataset.columns or {}
    dictionary = markdown.split("Data dictionary:")[1] if columns else ""
    assert columns or "The study plan has no data dictionary." in markdown
    for name, column in columns.items():  # the bundled plan's data dictionary, row by row
        assert any(line.startswith(f"| {name} | ") and f"| {column.type} |" in line
                   for line in dictionary.splitlines())


def _referenced_images(markdown: str, page: str) -> set[str]:
    return set(re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)) | set(
        re.findall(r'<img src="([^"]+)"', page))


def test_every_plot_the_card_references_is_a_valid_png(study: tuple[Path, dict[str, Any]],
                                                       tmp_path: Path) -> None:
    coordinator, _ = study
    out = write_card(coordinator, "diabetes", 1, tmp_path / "card")
    markdown = (out / "card.md").read_text(encoding="utf-8")
    page = (out / "card.html").read_text(encoding="utf-8")
    referenced = _referenced_images(markdown, page)
    assert referenced == {"roc.png", "calibration.png", "fairness.png", "importance.png"}
    for name in referenced:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        pixels = imread(out / name, format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100, name


def test_card_shows_leave_one_site_out_results_and_the_data_dictionary(
        study: tuple[Path, dict[str, Any]]) -> None:
    from common.plan import StudyPlan
    from server.registry import ModelRegistry

    coordinator, result = study
    with ModelRegistry.open(coordinator) as registry:
        mv = registry.get("diabetes", 1)
    base = load_plan(bundled_plan_path("diabetes"))
    raw = base.model_dump()
    raw["dataset"]["columns"] = {
        "bmi": {"type": "number", "unit": "kg/m2", "min": 10.0, "max": 80.0,
                "description": "Body mass index"},
        "progression_high": {"type": "binary", "description": "Above-median progression"}}
    plan = StudyPlan.model_validate(raw)
    loso = {"site-1": {"training_sites": ["site-2", "site-3"], "n": 31, "auc": 0.71234,
                       "accuracy": 0.6, "f1": 0.55, "brier": 0.21, "ece": 0.08},
            "site-2": {"training_sites": ["site-1", "site-3"],
                       "error": {"code": "permission_denied",
                                 "message": "this site does not share its own counts"}}}
    ctx = CardContext(model=mv, result={**result, "loso": loso}, plan=plan)
    markdown, page = card_markdown(ctx), card_html(ctx)
    assert "| site-1 | site-2, site-3 | 31 | 0.7123 | 0.6000 | 0.5500 | 0.2100 | 0.0800 |" \
        in markdown
    assert "failed: this site does not share its own counts" in markdown
    assert "| bmi | feature | number | kg/m2 | 10 to 80 | Body mass index |" in markdown
    assert "| progression_high | label | binary | - | any | Above-median progression |" \
        in markdown
    assert "<td>0.7123</td>" in page and "<td>kg/m2</td>" in page
    skipped = CardContext(model=mv, plan=plan, result={
        **result, "loso_skipped": "leave-one-site-out trains on 1 site(s) of 2 admitted"})
    assert "Not run. leave-one-site-out trains on 1 site(s)" in card_markdown(skipped)


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

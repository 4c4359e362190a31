"""``tessera data split``: a bundled study's data as per-site CSVs a site can register."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from common.plan import bundled_plan_path, load_plan
from tessera.cli import app

PLAN = load_plan(bundled_plan_path("breast_cancer"))


def _tessera(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_split_writes_disjoint_site_files_with_patient_ids(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = _tessera("data", "split", "--study", "breast_cancer", "--sites", "a,b,c",
                      "--out", out)
    assert result.exit_code == 0, result.output
    tables = {site: _rows(out / f"{site}.csv") for site in "abc"}
    ids = [row["patient_id"] for rows in tables.values() for row in rows]
    assert len(ids) == len(set(ids)) == 569
    sizes = sorted(len(rows) for rows in tables.values())
    assert sizes[-1] - sizes[0] <= 1  # iid: near-equal sizes
    header = set(tables["a"][0])
    assert {"patient_id", PLAN.dataset.label, *PLAN.dataset.features} <= header
    check = _tessera("site", "dataset", "check", out / "a.csv", "--plan",
                     bundled_plan_path("breast_cancer"), "--json")
    found = json.loads(check.output)
    assert found["rows"] == len(tables["a"]) and found["blocking"] is False, found
    assert {i["kind"] for i in found["issues"]} <= {"outlier"}  # real data: kept by default
    assert check.exit_code == 0 and found["default_policy"]["accepts"] is True


def test_dirichlet_split_is_skewed_and_reproducible(tmp_path: Path) -> None:
    def split(folder: Path) -> dict[str, list[str]]:
        result = _tessera("data", "split", "--study", "breast_cancer", "--sites", "a,b,c",
                          "--out", folder, "--partition", "dirichlet", "--alpha", "0.3",
                          "--seed", "7")
        assert result.exit_code == 0, result.output
        return {s: [r["patient_id"] for r in _rows(folder / f"{s}.csv")] for s in "abc"}

    first, second = split(tmp_path / "one"), split(tmp_path / "two")
    assert first == second
    assert sum(len(v) for v in first.values()) == 569


def test_bad_input_is_refused_and_nothing_is_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "a.csv").write_text("keep me\n", encoding="utf-8")
    cases = [
        (("--sites", "a,a"), 2, "each once"),
        (("--sites", "x", "--partition", "zipf"), 2, "--partition"),
        (("--sites", "x", "--alpha", "0"), 2, "--alpha"),
        (("--sites", "a,b"), 2, "already exist"),
    ]
    for extra, code, words in cases:
        result = _tessera("data", "split", "--study", "breast_cancer", "--out", out, *extra)
        assert result.exit_code == code, (extra, result.output)
        assert words in result.output and "Traceback" not in result.output
    unknown = _tessera("data", "split", "--study", "nope", "--sites", "x", "--out", out)
    assert unknown.exit_code == 4 and "no bundled study plan" in unknown.output
    assert (out / "a.csv").read_text(encoding="utf-8") == "keep me\n"
    assert sorted(p.name for p in out.iterdir()) == ["a.csv"]

"""Scoring patients with a registered model: CSV in, predictions out, and `tessera model ...`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from common.errors import ErrorCode, TesseraError
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import ModelSpec
from server.predict import explain_file, parse_model_document, predict_file, write_predictions
from server.provisioning import Federation, init_federation
from server.registry import ModelRegistry
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app

FEATURES = ["age", "bmi", "bp"]
SPEC = ModelSpec(kind="mlp", hidden=8, groups=2)
MEAN = np.array([50.0, 26.0, 90.0])
STD = np.array([12.0, 4.0, 11.0])
DATA_INVALID = 3


def _model_doc(seed: int = 3) -> dict[str, Any]:
    model = build_model(SPEC, n_features=len(FEATURES), seed=seed)
    values, layout = model_to_vector(model)
    values = np.random.default_rng(seed).normal(0.0, 0.8, values.size)  # spread the scores
    return {
        "format": "tessera-model/1", "study": "demo", "plan_hash": "ab" * 32,
        "model": SPEC.model_dump(mode="json"), "features": FEATURES, "label": "outcome",
        "layout": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                    "length": s.length} for s in layout],
        "values": values.tolist(), "mean": MEAN.tolist(), "std": STD.tolist(),
    }


def _direct_scores(doc: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """Scores computed straight from the model, bypassing CSV parsing."""
    model = build_model(SPEC, n_features=len(FEATURES), seed=99)
    _, layout = model_to_vector(model)
    vector_to_model(model, np.asarray(doc["values"]), layout)
    return predict_scores(model, (X - MEAN) / STD)


def _patients(n: int = 40, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(m, s, n) for m, s in zip(MEAN, STD, strict=True)])
    return [f"P{i:04d}" for i in range(n)], X


def _csv(ids: list[str], X: np.ndarray, *, columns: list[str] | None = None) -> bytes:
    """A site's CSV: extra columns (a label, a note) around the features, in another order."""
    header = columns or ["note", "bp", "patient_id", "outcome", "age", "bmi"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for pid, row in zip(ids, X, strict=True):
        cells = {"patient_id": pid, "note": "x", "outcome": "1",
                 **{name: repr(float(v)) for name, v in zip(FEATURES, row, strict=True)}}
        writer.writerow([cells[c] for c in header])
    return out.getvalue().encode("utf-8")


def test_predictions_reproduce_scores_computed_directly_with_the_model() -> None:
    doc = _model_doc()
    ids, X = _patients()
    got_ids, scores, labels = predict_file(doc, _csv(ids, X), source_name="in.csv")
    expected = _direct_scores(doc, X)
    assert got_ids == ids
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert 0 < labels.sum() < len(ids), "the fixture should score on both sides of 0.5"
    assert labels.tolist() == [int(s >= 0.5) for s in expected]


def _error(doc: dict[str, Any], data: bytes) -> TesseraError:
    with pytest.raises(TesseraError) as caught:
        predict_file(doc, data, source_name="in.csv")
    assert caught.value.code is ErrorCode.DATA_INVALID
    return caught.value


def test_missing_columns_are_named() -> None:
    ids, X = _patients(3)
    data = _csv(ids, X, columns=["patient_id", "age"])
    assert _error(_model_doc(), data).message == "in.csv: missing column(s): bmi, bp"
    no_ids = _csv(ids, X, columns=["age", "bmi", "bp"])
    assert "missing column(s): patient_id" in _error(_model_doc(), no_ids).message


@pytest.mark.parametrize(("cell", "problem"), [
    ("12,5 kg/m2", "not a number"), ("", "empty cell"), ("nan", "not a finite number"),
])
def test_a_bad_cell_names_row_and_column_but_never_the_value(cell: str, problem: str) -> None:
    ids, X = _patients(4)
    lines = _csv(ids, X, columns=["patient_id", "age", "bmi", "bp"]).decode().splitlines()
    parts = lines[3].split(",")
    parts[2] = f'"{cell}"'
    lines[3] = ",".join(parts)
    message = _error(_model_doc(), "\n".join(lines).encode()).message
    assert message == f"in.csv: row 3, column 'bmi': {problem}"
    assert "12,5" not in message and ids[2] not in message


def test_ragged_rows_duplicate_ids_and_empty_files_are_refused() -> None:
    doc = _model_doc()
    ids, X = _patients(3)
    text = _csv(ids, X, columns=["patient_id", "age", "bmi", "bp"]).decode()
    assert "row 2 has 3 cells, the header has 4" in _error(
        doc, text.replace(text.splitlines()[2], "P1,1,2").encode()).message
    assert "row 3: patient_id repeats row 1" in _error(
        doc, _csv([ids[0], ids[1], ids[0]], X)).message
    assert "no data rows" in _error(doc, b"patient_id,age,bmi,bp\n").message
    assert "no header line" in _error(doc, b"").message
    assert "not UTF-8" in _error(doc, b"\xff\xfe\x00").message


def test_a_damaged_model_document_is_a_clear_error() -> None:
    doc = {**_model_doc(), "std": [1.0, 0.0, 1.0]}
    ids, X = _patients(2)
    assert "model document: 'std' must be positive" in _error(doc, _csv(ids, X)).message
    with pytest.raises(TesseraError, match="format is not 'tessera-model/1'"):
        parse_model_document(b'{"format": "other"}')


def test_write_predictions_round_trips_scores_exactly(tmp_path: Path) -> None:
    scores = np.array([0.1 + 1e-17, 2 / 3, 0.5])
    out = tmp_path / "out.csv"
    write_predictions(out, ["a", "b", "c"], scores, np.array([0, 1, 1]))
    rows = list(csv.DictReader(out.open(newline="")))
    assert [float(r["score"]) for r in rows] == scores.tolist()
    assert [r["label"] for r in rows] == ["0", "1", "1"]
    assert [r["patient_id"] for r in rows] == ["a", "b", "c"]
    assert out.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


# --- tessera model ... -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_ambient_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return init_federation(tmp_path / "fed", name="f", sites=["h1", "h2"], archives=False)


@pytest.fixture
def coordinator(tmp_path: Path) -> Path:
    root = tmp_path / "coordinator"
    with ModelRegistry.open(root) as registry:
        for seed in (3, 4):
            registry.register(
                study="demo", plan_hash="ab" * 32, rounds=3,
                model_bytes=json.dumps(_model_doc(seed)).encode(),
                metrics={"auc": 0.91, "accuracy": 0.85}, epsilon_per_site={"h1": 2.5},
                lineage={"run_id": f"r{seed}", "sites": ["h1", "h2"]})
    return root


def _tessera(kit: Path, *args: str | Path) -> Any:
    return CliRunner().invoke(app, ["--kit", str(kit), *[str(a) for a in args]])


def test_model_list_prints_registered_versions(fed: Federation, coordinator: Path) -> None:
    text = _tessera(fed.coordinator_kit, "model", "list", "--coordinator-dir", coordinator)
    assert text.exit_code == 0, text.output
    assert "demo v1" in text.output and "demo v2" in text.output and "auc 0.910" in text.output
    as_json = _tessera(fed.auditor_kit, "model", "list", "--coordinator-dir", coordinator,
                       "--json")
    assert as_json.exit_code == 0, as_json.output
    assert [(m["study"], m["version"]) for m in json.loads(as_json.output)] == [
        ("demo", 1), ("demo", 2)]


def test_model_show_gives_lineage_and_inputs(fed: Federation, coordinator: Path) -> None:
    result = _tessera(fed.auditor_kit, "model", "show", "demo", "2", "--coordinator-dir",
                      coordinator, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["version"] == 2 and shown["lineage"]["run_id"] == "r4"
    assert shown["features"] == FEATURES and shown["epsilon_per_site"] == {"h1": 2.5}
    text = _tessera(fed.coordinator_kit, "model", "show", "demo", "1", "--coordinator-dir",
                    coordinator)
    assert text.exit_code == 0 and "patient_id and 3 features: age, bmi, bp" in text.output


def test_model_show_of_an_unknown_version_is_a_clear_error(fed: Federation,
                                                           coordinator: Path) -> None:
    result = _tessera(fed.coordinator_kit, "model", "show", "demo", "9", "--coordinator-dir",
                      coordinator)
    assert result.exit_code == 4
    assert "error: model 'demo' version 9 is not registered" in result.output
    assert "Traceback" not in result.output


def test_a_hospital_scores_its_patients(fed: Federation, coordinator: Path,
                                        tmp_path: Path) -> None:
    ids, X = _patients()
    source, out = tmp_path / "patients.csv", tmp_path / "scores.csv"
    source.write_bytes(_csv(ids, X))
    result = _tessera(fed.site_kit("h1"), "model", "predict", "--study", "demo", "--version",
                      "1", "--input", source, "--output", out, "--coordinator-dir", coordinator)
    assert result.exit_code == 0, result.output
    assert "scored 40 patients with demo v1" in result.output
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["patient_id"] for r in rows] == ids
    assert [float(r["score"]) for r in rows] == pytest.approx(
        _direct_scores(_model_doc(3), X).tolist(), abs=1e-12)


def test_predict_uses_the_latest_version_by_default(fed: Federation, coordinator: Path,
                                                    tmp_path: Path) -> None:
    ids, X = _patients(5)
    source, out = tmp_path / "patients.csv", tmp_path / "scores.csv"
    source.write_bytes(_csv(ids, X))
    result = _tessera(fed.coordinator_kit, "model", "predict", "--study", "demo", "--input",
                      source, "--output", out, "--coordinator-dir", coordinator)
    assert result.exit_code == 0 and "with demo v2" in result.output
    scores = [float(r["score"]) for r in csv.DictReader(out.open(newline=""))]
    assert scores == pytest.approx(_direct_scores(_model_doc(4), X).tolist(), abs=1e-12)


def test_predict_with_bad_input_fails_and_writes_nothing(fed: Federation, coordinator: Path,
                                                         tmp_path: Path) -> None:
    ids, X = _patients(3)
    source, out = tmp_path / "patients.csv", tmp_path / "scores.csv"
    source.write_bytes(_csv(ids, X, columns=["patient_id", "age", "bp"]))
    result = _tessera(fed.coordinator_kit, "model", "predict", "--study", "demo", "--input",
                      source, "--output", out, "--coordinator-dir", coordinator)
    assert result.exit_code == DATA_INVALID
    assert "error: patients.csv: missing column(s): bmi" in result.output
    assert not out.exists() and "Traceback" not in result.output


def test_model_commands_follow_the_access_policy(fed: Federation, coordinator: Path,
                                                 tmp_path: Path) -> None:
    ids, X = _patients(2)
    source = tmp_path / "patients.csv"
    source.write_bytes(_csv(ids, X))
    denied = _tessera(fed.auditor_kit, "model", "predict", "--study", "demo", "--input",
                      source, "--output", tmp_path / "o.csv", "--coordinator-dir", coordinator)
    assert denied.exit_code == 10 and not (tmp_path / "o.csv").exists()
    site_list = _tessera(fed.site_kit("h1"), "model", "list", "--coordinator-dir", coordinator)
    assert site_list.exit_code == 10


def test_a_folder_that_is_not_a_coordinator_folder_is_not_created(fed: Federation,
                                                                  tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = _tessera(fed.coordinator_kit, "model", "list", "--coordinator-dir", missing)
    assert result.exit_code == 4 and "no coordinator.db there" in result.output
    assert not missing.exists()


def test_predict_explain_adds_contributions_that_add_up_to_the_logit(
        fed: Federation, coordinator: Path, tmp_path: Path) -> None:
    ids, X = _patients(30)
    source, out = tmp_path / "patients.csv", tmp_path / "scores.csv"
    source.write_bytes(_csv(ids, X))
    result = _tessera(fed.site_kit("h1"), "model", "predict", "--study", "demo", "--version",
                      "1", "--input", source, "--output", out, "--coordinator-dir", coordinator,
                      "--explain")
    assert result.exit_code == 0, result.output
    assert "explained with integrated-gradients" in result.output
    with out.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    assert header == ["patient_id", "score", "label", "logit", "baseline_logit",
                      *[f"contribution_{f}" for f in FEATURES],
                      "top1_feature", "top2_feature", "top3_feature"]
    assert [r["patient_id"] for r in rows] == ids
    assert [float(r["score"]) for r in rows] == pytest.approx(
        _direct_scores(_model_doc(3), X).tolist(), abs=1e-12)
    baseline = float(rows[0]["baseline_logit"])
    for row in rows:
        contributions = {f: float(row[f"contribution_{f}"]) for f in FEATURES}
        assert sum(contributions.values()) == pytest.approx(
            float(row["logit"]) - baseline, abs=1e-3)
        score = float(row["score"])
        assert float(row["logit"]) == pytest.approx(np.log(score / (1 - score)), abs=1e-4)
        ranked = sorted(FEATURES, key=lambda f: -abs(contributions[f]))
        assert [row["top1_feature"], row["top2_feature"], row["top3_feature"]] == ranked
    assert len({row["baseline_logit"] for row in rows}) == 1


def test_explain_on_a_logistic_regression_is_exact(tmp_path: Path) -> None:
    spec = ModelSpec(kind="logreg")
    model = build_model(spec, n_features=len(FEATURES), seed=1)
    values, layout = model_to_vector(model)
    doc = {**_model_doc(), "model": spec.model_dump(mode="json"), "values": values.tolist(),
           "layout": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                       "length": s.length} for s in layout]}
    ids, X = _patients(5)
    got_ids, scores, labels, explanation = explain_file(doc, _csv(ids, X), source_name="in.csv")
    assert got_ids == ids and explanation.method == "exact-linear"
    weight, bias = values[:3], values[3]
    np.testing.assert_allclose(explanation.contributions, (X - MEAN) / STD * weight, rtol=1e-6)
    assert explanation.baseline_logit == pytest.approx(bias, rel=1e-6)
    out = tmp_path / "o.csv"
    write_predictions(out, got_ids, scores, labels, explanation)
    first = next(csv.DictReader(out.open(newline="")))
    assert float(first["contribution_bmi"]) == explanation.contributions[0, 1]


def test_model_list_and_show_say_whether_a_model_may_be_promoted(
        fed: Federation, coordinator: Path) -> None:
    with ModelRegistry.open(coordinator) as registry:
        registry.register(study="demo", plan_hash="ab" * 32, rounds=3,
                          model_bytes=json.dumps(_model_doc(5)).encode(), metrics={"auc": 0.7},
                          epsilon_per_site={}, lineage={"run_id": "r5"}, promotable=False,
                          promotion_reasons=["min_auc: auc 0.7000 is below the minimum 0.8"])
    listed = _tessera(fed.coordinator_kit, "model", "list", "--coordinator-dir", coordinator)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert "  promotable  " in lines[0] and "NOT promotable" in lines[2]
    shown = _tessera(fed.auditor_kit, "model", "show", "demo", "3", "--coordinator-dir",
                     coordinator)
    assert shown.exit_code == 0, shown.output
    assert "release    NOT promotable" in shown.output
    assert "min_auc: auc 0.7000 is below the minimum 0.8" in shown.output
    as_json = json.loads(_tessera(fed.auditor_kit, "model", "show", "demo", "3",
                                  "--coordinator-dir", coordinator, "--json").output)
    assert as_json["promotable"] is False
    assert as_json["promotion_reasons"] == ["min_auc: auc 0.7000 is below the minimum 0.8"]

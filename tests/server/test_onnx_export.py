"""ONNX export of a registered model: standardisation in the graph, parity, registry, card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from common.errors import ErrorCode, TesseraError
from common.models import predict_scores
from server.model_card import write_card
from server.onnx_export import (
    FP32_TOLERANCE,
    check_parity,
    export_onnx,
    onnx_scores,
    onnx_session,
)
from server.predict import load_model, parse_model_document
from server.registry import ModelRegistry
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app
from tests.registered import RegisteredStudy, fixed_model_doc, raw_rows, registered_study

DATA_INVALID = 3


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> RegisteredStudy:
    return registered_study(tmp_path_factory.mktemp("export"))


@pytest.fixture(autouse=True)
def _no_ambient_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)


def _doc(study: RegisteredStudy) -> dict[str, Any]:
    with ModelRegistry.open(study.coordinator_dir) as registry:
        return parse_model_document(registry.load_bytes(study.model))


def _tessera(study: RegisteredStudy, *args: str | Path) -> Any:
    return CliRunner().invoke(app, ["--kit", str(study.kit), *[str(a) for a in args]])


def test_exported_graph_takes_raw_features_and_matches_torch(study: RegisteredStudy) -> None:
    doc = _doc(study)
    artefact = export_onnx(doc)
    model, _, mean, std = load_model(doc)
    X = mean + 1.5 * (raw_rows(study, 500, seed=7) - mean)  # raw values, a wider spread
    expected = predict_scores(model, (X - mean) / std)
    got = onnx_scores(onnx_session(artefact.data), X)
    assert np.max(np.abs(got - expected)) <= FP32_TOLERANCE
    assert 0.05 < np.mean(expected >= 0.5) < 0.95, "rows should score on both sides"
    graph = onnx.load_from_string(artefact.data).graph
    assert [i.name for i in graph.input] == ["features"]
    assert [o.name for o in graph.output] == ["score"]
    assert {"Sub", "Div"} <= {n.op_type for n in graph.node}  # standardisation inside
    assert artefact.parity.passed and artefact.parity.source == "synthetic"
    assert artefact.parity.max_abs_diff <= FP32_TOLERANCE


@pytest.mark.parametrize(("kind", "seed"), [("logreg", 0), ("mlp", 1)])
def test_int8_export_keeps_labels_and_auc(kind: str, seed: int) -> None:
    artefact = export_onnx(fixed_model_doc(kind, seed=seed), quantize="int8")
    parity = artefact.parity
    assert {n.op_type for n in onnx.load_from_string(artefact.data).graph.node} \
        >= {"MatMulInteger"}
    assert parity.label_agreement >= 0.995
    assert parity.auc_torch is not None and parity.auc_onnx is not None
    assert abs(parity.auc_torch - parity.auc_onnx) <= 0.005
    assert parity.max_abs_diff > FP32_TOLERANCE  # it really is quantised


def test_parity_check_catches_a_graph_of_another_model(study: RegisteredStudy) -> None:
    doc = _doc(study)
    other = dict(doc, values=(-np.asarray(doc["values"])).tolist())
    wrong = export_onnx(other).data
    parity = check_parity(doc, wrong, raw_rows(study, 200), quantized=False)
    assert not parity.passed
    assert "max |score difference|" in parity.reasons[0]
    int8 = check_parity(doc, wrong, raw_rows(study, 200), quantized=True)
    assert not int8.passed and any("label agreement" in r for r in int8.reasons)


def test_cli_export_writes_the_file_records_it_and_the_card_lists_it(
        study: RegisteredStudy, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = _tessera(study, "model", "export", "breast_cancer", "1", "--format", "onnx",
                      "--coordinator-dir", study.coordinator_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert "passed" in result.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    with ModelRegistry.open(study.coordinator_dir) as registry:
        fixed = registry.register(study="fixed", plan_hash="b" * 64, rounds=1,
                                  model_bytes=json.dumps(fixed_model_doc()).encode(),
                                  metrics={}, epsilon_per_site={}, lineage={})
    result = _tessera(study, "model", "export", "fixed", str(fixed.version), "--quantize",
                      "int8", "--coordinator-dir", study.coordinator_dir,
                      "--out", tmp_path / "q.onnx")
    assert result.exit_code == 0, result.output
    result = _tessera(study, "model", "export", "breast_cancer", "1", "--quantize", "int8",
                      "--coordinator-dir", study.coordinator_dir, "--out", tmp_path / "r.onnx")
    # The DP-trained model's int8 graph passes or is refused by the gate; never half-written.
    assert (result.exit_code == 0) == (tmp_path / "r.onnx").exists(), result.output
    with ModelRegistry.open(study.coordinator_dir) as registry:
        exports = registry.exports("breast_cancer", 1)
        int8 = registry.exports("fixed", fixed.version)
        fp32 = [e for e in exports if e.precision == "fp32"][-1]
        assert registry.load_export(fp32) == out.read_bytes()
    assert fp32.sha256 == digest and fp32.parity["passed"] is True
    assert fp32.path == "models/breast_cancer-v1.fp32.onnx"
    assert [e.precision for e in int8] == ["int8"] and int8[0].parity["passed"] is True
    assert len([e for e in exports if e.precision == "int8"]) == (
        1 if (tmp_path / "r.onnx").exists() else 0)
    card = (write_card(study.coordinator_dir, "breast_cancer", 1, tmp_path / "card")
            / "card.md").read_text()
    assert "## Exported artefacts" in card
    assert digest in card and "onnx fp32" in card


def test_tampered_export_is_refused(study: RegisteredStudy, tmp_path: Path) -> None:
    with ModelRegistry.open(study.coordinator_dir) as registry:
        artefact = export_onnx(_doc(study))
        recorded = registry.record_export(study.model, artefact.data, precision="fp32",
                                          parity=artefact.parity.to_json())
        (study.coordinator_dir / recorded.path).write_bytes(artefact.data + b"\0")
        with pytest.raises(TesseraError) as info:
            registry.load_export(recorded)
    assert info.value.code == ErrorCode.DATA_INVALID
    assert "sha256" in info.value.message


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--quantize", "int4", "--quantize"),
    ("--format", "tflite", "--format"),
])
def test_cli_export_refuses_unknown_options_and_writes_nothing(
        study: RegisteredStudy, tmp_path: Path, option: str, value: str, needle: str) -> None:
    out = tmp_path / "model.onnx"
    result = _tessera(study, "model", "export", "breast_cancer", "1", option, value,
                      "--coordinator-dir", study.coordinator_dir, "--out", out)
    assert result.exit_code != 0
    assert needle in result.output
    assert not out.exists()


def test_cli_export_of_an_unknown_version_fails_cleanly(study: RegisteredStudy,
                                                        tmp_path: Path) -> None:
    result = _tessera(study, "model", "export", "breast_cancer", "9",
                      "--coordinator-dir", study.coordinator_dir, "--out", tmp_path / "m.onnx")
    assert result.exit_code != 0
    assert "not registered" in result.output
    assert json.dumps(list(tmp_path.iterdir()), default=str) == "[]"

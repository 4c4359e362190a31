"""ONNX export of a registered model, with its standardisation in the graph, and its parity check.

:func:`export_onnx` turns a model document (:mod:`server.predict`) into an ONNX graph whose
input ``features`` is a float32 batch ``(rows, F)`` of **raw** feature values in the
document's feature order and whose output ``score`` is the positive-class probability: the
federation-wide mean and std are constants of the graph, so a caller never standardises.
``quantize="int8"`` adds ONNX Runtime's dynamic int8 quantisation of the linear layers.

Every export is checked before it is handed out (:func:`check_parity`): ONNX Runtime against
the torch model the document rebuilds, on synthetic rows drawn from the public schema
(normal around the federation-wide mean with its std, fixed seed) or on a site's own rows.

* fp32: max |score difference| <= :data:`FP32_TOLERANCE`;
* int8: label agreement at 0.5 >= :data:`INT8_MIN_AGREEMENT` and |AUC(int8) - AUC(torch)| <=
  :data:`INT8_MAX_AUC_DELTA`. Synthetic rows have no outcome, so their labels are drawn
  once per row as Bernoulli(torch score) from the same fixed seed; a site's rows use their
  own labels.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from common.errors import ErrorCode, TesseraError
from common.models import predict_scores
from server.predict import load_model

Quantize = Literal["int8"]
INPUT = "features"
OUTPUT = "score"
OPSET = 18
FP32_TOLERANCE = 1e-5
INT8_MIN_AGREEMENT = 0.995
INT8_MAX_AUC_DELTA = 0.005
SYNTHETIC_ROWS = 2000
SYNTHETIC_SEED = 20240917


@dataclass(frozen=True)
class Parity:
    """What the export's parity check measured, and whether it passed."""

    source: str
    rows: int
    max_abs_diff: float
    label_agreement: float
    auc_torch: float | None
    auc_onnx: float | None
    passed: bool
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "rows": self.rows, "max_abs_diff": self.max_abs_diff,
                "label_agreement": self.label_agreement, "auc_torch": self.auc_torch,
                "auc_onnx": self.auc_onnx, "passed": self.passed,
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class OnnxArtefact:
    """An exported graph (``quantize`` None: fp32) and the parity check it passed."""

    data: bytes
    quantize: Quantize | None
    parity: Parity

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class _Scoring(nn.Module):
    """Raw features -> standardise -> zoo model -> sigmoid: the graph that is exported."""

    def __init__(self, model: nn.Module, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model((x - self.mean) / self.std))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's and quantiser's progress prints and advisories stay off the console."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _fp32_graph(doc: dict[str, Any]) -> bytes:
    model, features, mean, std = load_model(doc)
    scoring = _Scoring(model.eval(), mean, std).eval()
    example = (torch.zeros(2, len(features), dtype=torch.float32),)
    with _quiet():
        program = torch.onnx.export(
            scoring, example, dynamo=True, verbose=False, input_names=[INPUT],
            output_names=[OUTPUT], opset_version=OPSET,
            dynamic_shapes=({0: torch.export.Dim("rows")},))
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise TesseraError(ErrorCode.INTERNAL, "onnx export: the exporter returned nothing")
    return bytes(program.model_proto.SerializeToString())


def _int8_graph(fp32: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder, _quiet():
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(fp32)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target.read_bytes()


def onnx_session(data: bytes, *, threads: int = 1) -> Any:
    """An ONNX Runtime session on the CPU for an exported graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"onnx: not a loadable graph ({type(exc).__name__})") from None


def onnx_scores(session: Any, X_raw: np.ndarray) -> np.ndarray:
    """Scores (float64) from an exported graph for raw feature rows."""
    batch = np.ascontiguousarray(X_raw, dtype=np.float32)
    return np.asarray(session.run([OUTPUT], {INPUT: batch})[0], dtype=np.float64).reshape(-1)


def synthetic_rows(doc: dict[str, Any], *, rows: int = SYNTHETIC_ROWS,
                   seed: int = SYNTHETIC_SEED) -> np.ndarray:
    """Rows drawn from the public schema: normal around the federation-wide mean and std."""
    _, _, mean, std = load_model(doc)
    rng = np.random.default_rng(seed)
    return rng.normal(mean, std, size=(rows, mean.size))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    if labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def check_parity(doc: dict[str, Any], data: bytes, X_raw: np.ndarray, *,
                 quantized: bool, labels: np.ndarray | None = None,
                 source: str = "synthetic") -> Parity:
    """Compare an exported graph with the torch model of ``doc`` on raw rows ``X_raw``."""
    X = np.asarray(X_raw, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1:
        raise TesseraError(ErrorCode.DATA_INVALID, "parity rows: expected (rows, features)")
    model, _, mean, std = load_model(doc)
    reference = np.clip(predict_scores(model, (X - mean) / std), 0.0, 1.0)
    got = onnx_scores(onnx_session(data), X)
    diff = float(np.max(np.abs(got - reference)))
    agreement = float(np.mean((got >= 0.5) == (reference >= 0.5)))
    if labels is None:
        truth = (np.random.default_rng(SYNTHETIC_SEED + 1).random(X.shape[0]) < reference)
    else:
        truth = np.asarray(labels).reshape(-1) == 1
    auc_torch, auc_onnx = _auc(truth, reference), _auc(truth, got)
    reasons: list[str] = []
    if not quantized and not diff <= FP32_TOLERANCE:
        reasons.append(f"max |score difference| {diff:.3g} > {FP32_TOLERANCE:g}")
    if quantized and agreement < INT8_MIN_AGREEMENT:
        reasons.append(f"label agreement {agreement:.4f} < {INT8_MIN_AGREEMENT}")
    if quantized and auc_torch is not None and auc_onnx is not None \
            and abs(auc_onnx - auc_torch) > INT8_MAX_AUC_DELTA:
        reasons.append(f"AUC differs by {abs(auc_onnx - auc_torch):.4f} > "
                       f"{INT8_MAX_AUC_DELTA}")
    return Parity(source=source, rows=int(X.shape[0]), max_abs_diff=diff,
                  label_agreement=agreement, auc_torch=auc_torch, auc_onnx=auc_onnx,
                  passed=not reasons, reasons=tuple(reasons))


def export_onnx(doc: dict[str, Any], *, quantize: Quantize | None = None,
                rows: np.ndarray | None = None, labels: np.ndarray | None = None,
                source: str = "synthetic") -> OnnxArtefact:
    """Export ``doc`` to ONNX and check its parity (synthetic rows unless ``rows`` given).

    Raises DATA_INVALID, naming what was measured, when the parity check fails.
    """
    if quantize not in (None, "int8"):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "quantize: must be 'int8' or none")
    data = _fp32_graph(doc)
    if quantize == "int8":
        data = _int8_graph(data)
    X = synthetic_rows(doc) if rows is None else rows
    parity = check_parity(doc, data, X, quantized=quantize is not None, labels=labels,
                          source=source)
    if not parity.passed:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "onnx export failed its parity check: " + "; ".join(parity.reasons))
    return OnnxArtefact(data=data, quantize=quantize, parity=parity)

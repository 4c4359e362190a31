"""Scoring patients with a registered model: model documents, CSV input, predictions out.

A registered model file is a JSON model document (``tessera-model/1``, written by
:func:`server.coordinator.model_document`): the zoo model spec, feature names, the flat
weight vector with its layout, and the federation-wide mean and std used to standardise.
:func:`predict_file` reads a CSV with a ``patient_id`` column and every model feature (extra
columns, the label included, are ignored) and returns one score and label per row;
:func:`explain_file` adds each row's feature contributions (:mod:`server.explain`);
:func:`write_predictions` writes them atomically. Error messages name the source, row and
column at fault but never a cell's value: the input is patient data.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from torch import nn

from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.layout import TensorSlot
from common.models import build_model, predict_scores, vector_to_model
from common.plan import ModelSpec
from server.explain import Explanation, explain

MODEL_FORMAT = "tessera-model/1"
ID_COLUMN = "patient_id"
THRESHOLD = 0.5
#: Features named per row by ``--explain``.
TOP_FEATURES = 3
CONTRIBUTION_PREFIX = "contribution_"


def _doc_error(message: str) -> TesseraError:
    return TesseraError(ErrorCode.DATA_INVALID, f"model document: {message}")


def parse_model_document(data: bytes) -> dict[str, Any]:
    """Decode a registered model file's bytes into its JSON document (format checked)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _doc_error("not UTF-8 JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise _doc_error(f"format is not {MODEL_FORMAT!r}")
    return doc


def _float_vector(doc: dict[str, Any], key: str, length: int | None = None) -> np.ndarray:
    raw = doc.get(key)
    if not isinstance(raw, list) or any(
            isinstance(v, bool) or not isinstance(v, int | float) for v in raw):
        raise _doc_error(f"{key!r} must be a list of numbers")
    values = np.asarray(raw, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise _doc_error(f"{key!r} contains non-finite numbers")
    if length is not None and values.size != length:
        raise _doc_error(f"{key!r} has {values.size} values for {length} features")
    return values


def _features(doc: dict[str, Any]) -> list[str]:
    features = doc.get("features")
    if not isinstance(features, list) or not features \
            or any(not isinstance(f, str) or not f for f in features):
        raise _doc_error("'features' must be a non-empty list of column names")
    if len(set(features)) != len(features):
        raise _doc_error("'features' names a column twice")
    return features


def load_model(doc: dict[str, Any]) -> tuple[nn.Module, list[str], np.ndarray, np.ndarray]:
    """Rebuild the model of a document: (model, features, mean, std)."""
    features = _features(doc)
    mean = _float_vector(doc, "mean", len(features))
    std = _float_vector(doc, "std", len(features))
    if np.any(std <= 0):
        raise _doc_error("'std' must be positive")
    try:
        spec = ModelSpec.model_validate(doc.get("model"))
    except ValidationError:
        raise _doc_error("'model' is not a valid model spec") from None
    try:
        layout = [TensorSlot(name=s["name"], shape=tuple(s["shape"]), offset=s["offset"],
                             length=s["length"]) for s in doc["layout"]]
    except (KeyError, TypeError, ValueError):
        raise _doc_error("'layout' must list {name, shape, offset, length} slots") from None
    model = build_model(spec, n_features=len(features), seed=0)
    vector_to_model(model, _float_vector(doc, "values"), layout)
    return model, features, mean, std


def _rows(csv_bytes: bytes, source_name: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank data rows, each with its number (1 = after the header)."""
    try:
        text = csv_bytes.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{source_name}: not UTF-8 text") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{source_name}: not a valid CSV file ({exc})") from None
    if not rows or not rows[0]:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{source_name}: no header line")
    data = [(number, row) for number, row in enumerate(rows[1:], start=1) if row]
    return [name.strip() for name in rows[0]], data


def _column_indexes(header: list[str], wanted: list[str], source_name: str) -> list[int]:
    missing = [name for name in wanted if name not in header]
    if missing:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{source_name}: missing column(s): {', '.join(missing)}")
    twice = [name for name in wanted if header.count(name) > 1]
    if twice:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{source_name}: column(s) appear more than once: {', '.join(twice)}")
    return [header.index(name) for name in wanted]


def _cell_number(cell: str, *, source_name: str, row: int, column: str) -> float:
    where = f"{source_name}: row {row}, column {column!r}"
    if not cell.strip():
        raise TesseraError(ErrorCode.DATA_INVALID, f"{where}: empty cell")
    try:
        value = float(cell)
    except ValueError:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{where}: not a number") from None
    if not math.isfinite(value):
        raise TesseraError(ErrorCode.DATA_INVALID, f"{where}: not a finite number")
    return value


def _read_rows(model_doc: dict[str, Any], csv_bytes: bytes, *, source_name: str
               ) -> tuple[nn.Module, list[str], list[str], np.ndarray]:
    """The model, its features, the patient ids and the standardised feature matrix."""
    model, features, mean, std = load_model(model_doc)
    header, rows = _rows(csv_bytes, source_name)
    columns = [ID_COLUMN, *features]
    indexes = _column_indexes(header, columns, source_name)
    if not rows:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{source_name}: no data rows")
    ids: list[str] = []
    seen: dict[str, int] = {}
    X = np.empty((len(rows), len(features)), dtype=np.float64)
    for i, (number, row) in enumerate(rows):
        if len(row) != len(header):
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"{source_name}: row {number} has {len(row)} cells, "
                               f"the header has {len(header)}")
        patient = row[indexes[0]].strip()
        if not patient:
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"{source_name}: row {number}, column {ID_COLUMN!r}: empty cell")
        if patient in seen:
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"{source_name}: row {number}: {ID_COLUMN} repeats row "
                               f"{seen[patient]}")
        seen[patient] = number
        ids.append(patient)
        for j, (name, index) in enumerate(zip(features, indexes[1:], strict=True)):
            X[i, j] = _cell_number(row[index], source_name=source_name,
                                   row=number, column=name)
    return model, features, ids, (X - mean) / std


def predict_file(model_doc: dict[str, Any], csv_bytes: bytes, *,
                 source_name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Score every row of a CSV: (patient ids, scores in [0, 1], labels score >= 0.5).

    Error messages number rows from 1 after the header line; blank lines are skipped.
    """
    model, _, ids, X = _read_rows(model_doc, csv_bytes, source_name=source_name)
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    return ids, scores, (scores >= THRESHOLD).astype(np.int64)


def explain_file(model_doc: dict[str, Any], csv_bytes: bytes, *, source_name: str
                 ) -> tuple[list[str], np.ndarray, np.ndarray, Explanation]:
    """:func:`predict_file` plus each row's feature contributions (:mod:`server.explain`)."""
    model, features, ids, X = _read_rows(model_doc, csv_bytes, source_name=source_name)
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    return ids, scores, (scores >= THRESHOLD).astype(np.int64), explain(model, X, features)


def explanation_header(explanation: Explanation, *, top: int = TOP_FEATURES) -> list[str]:
    """The columns ``--explain`` adds after ``patient_id,score,label``."""
    k = min(top, len(explanation.features))
    return ["logit", "baseline_logit",
            *[CONTRIBUTION_PREFIX + name for name in explanation.features],
            *[f"top{i}_feature" for i in range(1, k + 1)]]


def write_predictions(path: Path, ids: Sequence[str], scores: Sequence[float] | np.ndarray,
                      labels: Sequence[int] | np.ndarray,
                      explanation: Explanation | None = None) -> None:
    """Write ``patient_id,score,label`` rows to ``path`` (mode 0o600) via a rename.

    With an ``explanation``, each row also gets its logit, the baseline patient's logit, one
    ``contribution_<feature>`` column per feature (they sum to ``logit - baseline_logit``)
    and the names of the three features with the largest absolute contributions.
    """
    if not len(ids) == len(scores) == len(labels):
        raise TesseraError(ErrorCode.INTERNAL,
                           "predictions: ids, scores and labels differ in length")
    if explanation is not None and explanation.contributions.shape[0] != len(ids):
        raise TesseraError(ErrorCode.INTERNAL, "predictions: explanation rows differ in number")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    extra = [] if explanation is None else explanation_header(explanation)
    writer.writerow([ID_COLUMN, "score", "label", *extra])
    tops = [] if explanation is None else explanation.top(TOP_FEATURES)
    for i, (patient, score, label) in enumerate(zip(ids, scores, labels, strict=True)):
        row = [patient, repr(float(score)), int(label)]
        if explanation is not None:
            row += [repr(float(explanation.logits[i])), repr(explanation.baseline_logit),
                    *[repr(float(c)) for c in explanation.contributions[i]], *tops[i]]
        writer.writerow(row)
    atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8"))

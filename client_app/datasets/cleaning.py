"""Applying the operator's policy to an inspected data file: the cleaned, canonical content.

:func:`clean` refuses (``DATA_INVALID``, with the report) when the file has a blocking
issue, when the policy says ``refuse`` for an issue kind that is present, or when a choice
cannot fix an issue (imputing a patient id, the label or a non-numeric column; clipping a
category). Otherwise it removes the rows the policy drops (``drop`` for duplicates removes
the later exact repeats and every row of a patient id whose rows disagree), clips
out-of-range numbers to the allowed range, and fills missing numeric features with the
median or mean of the column's remaining values (rounded for integer columns).

The result is canonical CSV: ``patient_id``, the plan's features in plan order, the label
and the sensitive column when it is not a feature; numbers in their shortest exact form.
Its SHA-256 is the dataset version, so the same table gives the same version whether it
came as CSV or Parquet, with other extra columns or in another column order.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

import numpy as np

from client_app.datasets.inspection import Cell, ColumnRule, Inspection
from client_app.datasets.source import number_text
from client_app.datasets.validation import POLICY_FIELD, Policy
from common.datasets import PATIENT_ID, read_csv_bytes
from common.errors import ErrorCode, TesseraError


@dataclass(frozen=True)
class CleanResult:
    """The cleaned content and what the policy did to get it."""

    content: bytes
    rows: int
    dropped_rows: int
    imputed_values: int
    clipped_values: int

    def to_json(self) -> dict[str, int]:
        """What was done, as counts."""
        counts = asdict(self)
        del counts["content"]
        return counts


def refusals(inspection: Inspection, policy: Policy) -> list[str]:
    """Why ``policy`` cannot turn this file into a dataset (empty: it can)."""
    report = inspection.report
    if report.blocking:
        return ["the file has blocking issues that no policy can fix"]
    reasons = []
    for kind in sorted(report.issue_kinds):
        if policy.decision(kind) == "refuse":
            reasons.append(f"{kind} issues are present and the policy says "
                           f"{POLICY_FIELD[kind]}=refuse")
    rules = {rule.name: rule for rule in inspection.rules}
    if policy.missing.startswith("impute"):
        for column in inspection.flagged("missing"):
            if column == PATIENT_ID or not rules[str(column)].imputable:
                reasons.append(f"column {column!r}: missing values cannot be imputed "
                               "(only number and integer features can); choose missing=drop")
    if policy.out_of_range == "clip":
        for column in inspection.flagged("out_of_range"):
            if rules[str(column)].categories:
                reasons.append(f"column {column!r}: a category cannot be clipped; choose "
                               "out_of_range=drop")
    return reasons


def _refuse(inspection: Inspection, reasons: list[str]) -> TesseraError:
    report = inspection.report
    return TesseraError(ErrorCode.DATA_INVALID,
                        f"{report.source_name} refused: {'; '.join(reasons)}\n{report.to_text()}")


def _dropped(inspection: Inspection, policy: Policy) -> set[int]:
    dropped: set[int] = set()
    for kind, field in POLICY_FIELD.items():
        if getattr(policy, field) == "drop":
            for rows in inspection.flagged(kind).values():
                dropped.update(rows)
    return dropped


def _clip(value: Cell, rule: ColumnRule) -> Cell:
    if not isinstance(value, float):
        return value
    low = -np.inf if rule.minimum is None else rule.minimum
    high = np.inf if rule.maximum is None else rule.maximum
    return float(min(max(value, low), high))


def clean(inspection: Inspection, policy: Policy) -> CleanResult:
    """The canonical content ``policy`` makes of the file, or DATA_INVALID if it refuses."""
    reasons = refusals(inspection, policy)
    if reasons:
        raise _refuse(inspection, reasons)
    dropped = _dropped(inspection, policy)
    kept = [row for row in inspection.rows if row.number not in dropped]
    if not kept:
        raise _refuse(inspection, ["the policy drops every row"])
    grid = [list(row.values) for row in kept]
    clipped = imputed = 0
    out_of_range = inspection.flagged("out_of_range") if policy.out_of_range == "clip" else {}
    for index, rule in enumerate(inspection.rules):
        flagged = out_of_range.get(rule.name, frozenset())
        for row, values in zip(kept, grid, strict=True):
            if row.number in flagged:
                values[index] = _clip(values[index], rule)
                clipped += 1
    if policy.missing.startswith("impute"):
        for index, rule in enumerate(inspection.rules):
            holes = [values for values in grid if values[index] is None]
            if not holes:
                continue
            present = np.array([v[index] for v in grid if v[index] is not None], dtype=float)
            if present.size == 0:
                raise _refuse(inspection, [f"column {rule.name!r}: no values to impute from"])
            fill = float(np.median(present) if policy.missing == "impute_median"
                         else present.mean())
            fill = float(round(fill)) if rule.type == "integer" else fill
            for values in holes:
                values[index] = fill
                imputed += 1
    content = canonical_csv(inspection.rules, [r.patient or "" for r in kept], grid)
    read_csv_bytes(content, inspection.spec, source_name=inspection.report.source_name)
    return CleanResult(content, len(kept), len(inspection.rows) - len(kept), imputed, clipped)


def _cell_text(value: Cell, rule: ColumnRule) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(int(value)) if rule.role == "label" else number_text(value)


def canonical_csv(rules: tuple[ColumnRule, ...], patients: list[str],
                  grid: list[list[Cell]]) -> bytes:
    """Canonical CSV bytes: patient id, features, label, then a non-feature sensitive column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([PATIENT_ID, *(rule.name for rule in rules)])
    for patient, values in zip(patients, grid, strict=True):
        writer.writerow([patient, *(_cell_text(v, r) for v, r in zip(values, rules,
                                                                      strict=True))])
    return buffer.getvalue().encode("utf-8")

"""Checking a site's data file against a study plan's schema and data dictionary.

:func:`inspect` reads the file (:mod:`client_app.datasets.source`), then checks, in order: the
header (the patient id, every feature, the label and the sensitive column present, no name
twice), row widths, every cell against its column's rule, duplicate rows and patient ids,
outliers and label balance. The result is a
:class:`~client_app.datasets.validation.ValidationReport`
plus the parsed rows and, per issue kind and column, every row at fault, which
:mod:`client_app.datasets.cleaning` uses to apply a policy.

Column rules come from the plan's data dictionary (``dataset.columns``); without an entry a
feature is a ``number``, the label ``binary`` (0 or 1) and a sensitive column that is not a
feature free text. Empty cells and ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` (any case)
are missing values. Outliers use Tukey's far-out fences: a value is an outlier when it lies
more than 3 interquartile ranges below the first or above the third quartile of its column.
Only ``number`` and ``integer`` features with at least 20 values and a non-zero interquartile
range are checked, and a value already outside the dictionary's range is reported as out of
range, not as an outlier.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from client_app.datasets.source import SourceTable, Unreadable, number_text, read_source
from client_app.datasets.validation import (
    ISSUE_KINDS,
    MAX_LISTED_ROWS,
    Issue,
    ValidationReport,
    rows_text,
)
from common.datasets import PATIENT_ID
from common.plan import DatasetSpec

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
OUTLIER_IQR_FACTOR = 3.0
MIN_VALUES_FOR_OUTLIERS = 20
MIN_MINORITY_SHARE = 0.10
Cell = float | str | None


@dataclass(frozen=True)
class ColumnRule:
    """How one plan column is checked: its role, type and allowed values."""

    name: str
    role: str  # "feature" | "label" | "sensitive"
    type: str  # "number" | "integer" | "binary" | "category" | "text"
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        """Whether cells must be numbers (features and the label always are)."""
        return self.role != "sensitive" or self.type in ("number", "integer", "binary")

    @property
    def imputable(self) -> bool:
        """Whether a missing value may be replaced by the column's median or mean."""
        return self.role == "feature" and self.type in ("number", "integer")


@dataclass(frozen=True)
class ParsedRow:
    """One data row: its file row number, patient id and a value per rule (None: absent)."""

    number: int
    patient: str | None
    values: tuple[Cell, ...]


@dataclass(frozen=True)
class Inspection:
    """A report with what cleaning needs: the rules, parsed rows and rows at fault."""

    report: ValidationReport
    spec: DatasetSpec
    rules: tuple[ColumnRule, ...]
    rows: tuple[ParsedRow, ...]
    flags: dict[tuple[str, str | None], frozenset[int]]

    def flagged(self, kind: str) -> dict[str | None, frozenset[int]]:
        """Rows at fault for ``kind``, by column."""
        return {col: rows for (k, col), rows in self.flags.items() if k == kind}


def column_rules(spec: DatasetSpec) -> tuple[ColumnRule, ...]:
    """The rules for the plan's features, label and sensitive column, in that order."""
    dictionary = spec.columns or {}
    named = [(f, "feature") for f in spec.features] + [(spec.label, "label")]
    if spec.sensitive is not None and spec.sensitive not in spec.features:
        named.append((spec.sensitive, "sensitive"))
    rules = []
    for name, role in named:
        entry = dictionary.get(name)
        default = {"feature": "number", "label": "binary", "sensitive": "text"}[role]
        rules.append(ColumnRule(
            name=name, role=role, type=entry.type if entry else default,
            minimum=entry.min if entry else None, maximum=entry.max if entry else None,
            categories=tuple(entry.categories or ()) if entry else (),
        ))
    return tuple(rules)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_cell(text: str, rule: ColumnRule) -> tuple[Cell, str | None]:
    """A cell's value and its problem: missing, not_number, not_whole, not_binary, range."""
    cell = text.strip()
    if cell.lower() in MISSING_TOKENS:
        return None, "missing"
    if not rule.numeric:
        if not rule.categories or cell in rule.categories:
            return cell, None
        value = _number(cell)
        for category in rule.categories:
            if value is not None and _number(category) == value:
                return category, None
        return cell, "range"
    value = _number(cell)
    if value is None or not math.isfinite(value):
        return None, "not_number"
    if rule.type == "integer" and not value.is_integer():
        return None, "not_whole"
    if rule.type == "binary" and value not in (0.0, 1.0):
        return None, "not_binary"
    if rule.categories and value not in {_number(c) for c in rule.categories}:
        return value, "range"
    if (rule.minimum is not None and value < rule.minimum) or (
            rule.maximum is not None and value > rule.maximum):
        return value, "range"
    return value, None


def _range_text(rule: ColumnRule) -> str:
    if rule.categories:
        return f"values not among the allowed categories ({', '.join(rule.categories)})"
    low = "" if rule.minimum is None else number_text(rule.minimum)
    high = "" if rule.maximum is None else number_text(rule.maximum)
    if low and high:
        return f"values outside the allowed range [{low}, {high}]"
    return f"values below the minimum {low}" if low else f"values above the maximum {high}"


_PROBLEMS = {  # problem -> (issue kind, blocking, what the cells are)
    "missing": ("missing", False, "missing values"),
    "not_number": ("type", True, "values that are not finite numbers"),
    "not_whole": ("type", True, "values that are not whole numbers (type integer)"),
    "not_binary": ("type", True, "values that are not 0 or 1"),
}


class _Findings:
    """Rows at fault, collected per (kind, column, description)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str | None, str, bool], list[int]] = defaultdict(list)
        #: Every row of a patient id whose rows disagree (the first included): what a
        #: "drop" policy removes, since which of them is right cannot be told.
        self.conflicting_id_rows: set[int] = set()

    def add(self, kind: str, column: str | None, what: str, row: int, *,
            blocking: bool = False) -> None:
        self.rows[(kind, column, what, blocking)].append(row)

    def issues(self) -> list[Issue]:
        found = []
        for (kind, column, what, blocking), rows in self.rows.items():
            listed = tuple(sorted(rows)[:MAX_LISTED_ROWS])
            where = f"column {column!r}: " if column is not None else ""
            count = f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
            text = f"{where}{what} in {count} ({rows_text(listed, len(rows))})"
            found.append(Issue(kind, column, listed, len(rows), text, blocking))
        return found

    def flags(self) -> dict[tuple[str, str | None], frozenset[int]]:
        merged: dict[tuple[str, str | None], set[int]] = defaultdict(set)
        for (kind, column, _, _), rows in self.rows.items():
            merged[(kind, column)].update(rows)
        if self.conflicting_id_rows:
            merged[("duplicate_id", PATIENT_ID)].update(self.conflicting_id_rows)
        return {key: frozenset(rows) for key, rows in merged.items()}


def _header_issues(header: tuple[str, ...], spec: DatasetSpec) -> list[Issue]:
    issues = []
    for name in sorted({n for n in header if header.count(n) > 1}):
        issues.append(Issue("schema", name, (), 1,
                            f"header: column {name!r} appears more than once", True))
    roles = {PATIENT_ID: "the patient id", spec.label: "the label"}
    roles.update({f: "a feature" for f in spec.features})
    if spec.sensitive is not None and spec.sensitive not in spec.features:
        roles[spec.sensitive] = "the sensitive column"
    for name, role in roles.items():
        if name not in header:
            issues.append(Issue("schema", name, (), 1,
                                f"header: column {name!r} ({role}) is missing", True))
    return issues


def _width_issues(table: SourceTable) -> list[Issue]:
    width = len(table.header)
    findings = _Findings()
    for number, cells in table.rows:
        if len(cells) != width:
            findings.add("schema", None, f"a number of cells other than the header's {width}",
                         number, blocking=True)
    return findings.issues()


def _parse_rows(table: SourceTable, rules: tuple[ColumnRule, ...],
                findings: _Findings) -> list[ParsedRow]:
    width = len(table.header)
    at = {name: table.header.index(name) for name in (PATIENT_ID, *(r.name for r in rules))}
    parsed = []
    for number, cells in table.rows:
        if len(cells) != width:
            continue  # reported by _width_issues
        patient = cells[at[PATIENT_ID]].strip() or None
        if patient is None:
            findings.add("missing", PATIENT_ID, "missing patient ids", number)
        values = []
        for rule in rules:
            value, problem = parse_cell(cells[at[rule.name]], rule)
            if problem == "range":
                findings.add("out_of_range", rule.name, _range_text(rule),
                             number)
            elif problem is not None:
                kind, blocking, what = _PROBLEMS[problem]
                findings.add(kind, rule.name, what, number, blocking=blocking)
            values.append(value)
        parsed.append(ParsedRow(number, patient, tuple(values)))
    return parsed


def _key_text(value: Cell) -> str:
    return "" if value is None else number_text(value) if isinstance(value, float) else value


def _duplicates(rows: list[ParsedRow], findings: _Findings) -> None:
    """Exact repeats of an earlier row, and patient ids on rows that disagree."""
    seen_rows: set[tuple[str | None, tuple[str, ...]]] = set()
    first_key: dict[str, tuple[str, ...]] = {}
    rows_of: dict[str, list[int]] = defaultdict(list)
    conflicting: set[str] = set()
    for row in rows:
        key = tuple(_key_text(v) for v in row.values)
        if (row.patient, key) in seen_rows:
            findings.add("duplicate_row", None, "exact repeats of an earlier row", row.number)
            continue
        seen_rows.add((row.patient, key))
        if row.patient is None:
            continue
        rows_of[row.patient].append(row.number)
        if row.patient in first_key and first_key[row.patient] != key:
            conflicting.add(row.patient)
        first_key.setdefault(row.patient, key)
    later = sorted(n for p in conflicting for n in rows_of[p][1:])
    for number in later:
        findings.add("duplicate_id", PATIENT_ID,
                     "a patient id already used by an earlier row with other values",
                     number)
    findings.conflicting_id_rows.update(n for p in conflicting for n in rows_of[p])


def _outliers(rows: list[ParsedRow], rules: tuple[ColumnRule, ...], findings: _Findings,
              out_of_range: dict[tuple[str, str | None], frozenset[int]]) -> None:
    for index, rule in enumerate(rules):
        if rule.role != "feature" or rule.type not in ("number", "integer"):
            continue
        present: list[tuple[int, float]] = []
        for row in rows:
            value = row.values[index]
            if isinstance(value, float):
                present.append((row.number, value))
        if len(present) < MIN_VALUES_FOR_OUTLIERS:
            continue
        values = np.array([v for _, v in present], dtype=np.float64)
        q1, q3 = np.percentile(values, [25.0, 75.0])
        iqr = q3 - q1
        if iqr <= 0:
            continue
        low, high = q1 - OUTLIER_IQR_FACTOR * iqr, q3 + OUTLIER_IQR_FACTOR * iqr
        skip = out_of_range.get(("out_of_range", rule.name), frozenset())
        for number, value in present:
            if number not in skip and not low <= value <= high:
                findings.add("outlier", rule.name,
                             "values more than 3 interquartile ranges beyond the quartiles",
                             number)


def _label_balance(counts: dict[str, int], label: str) -> list[Issue]:
    total = sum(counts.values())
    if total == 0:
        return []
    minority, smallest = min(counts.items(), key=lambda item: (item[1], item[0]))
    if smallest == 0:
        present = next(k for k, v in counts.items() if v)
        return [Issue("label_balance", label, (), total,
                      f"column {label!r}: only label {present} occurs ({total} rows)", False)]
    if smallest / total < MIN_MINORITY_SHARE:
        return [Issue("label_balance", label, (), smallest,
                      f"column {label!r}: label {minority} is {smallest / total:.1%} of rows "
                      f"({smallest} of {total}), below {MIN_MINORITY_SHARE:.0%}", False)]
    return []


def inspect(content: bytes, *, source_name: str, spec: DatasetSpec) -> Inspection:
    """Check a data file's bytes against the plan's dataset spec; writes nothing."""
    source_hash = hashlib.sha256(content).hexdigest()
    table = read_source(content, name=source_name)
    rules = column_rules(spec)

    def report(issues: list[Issue], rows: int, header: tuple[str, ...], fmt: str,
               labels: dict[str, int], ignored: tuple[str, ...] = ()) -> ValidationReport:
        return ValidationReport(source_name, source_hash, fmt, rows, header, tuple(issues),
                                labels, ignored)

    if isinstance(table, Unreadable):
        issue = Issue(table.kind, None, table.rows, 1, table.message, True)
        return Inspection(report([issue], 0, (), table.format, {}), spec, rules, (), {})
    required = {PATIENT_ID, *(r.name for r in rules)}
    ignored = tuple(n for n in table.header if n not in required)
    header, widths = _header_issues(table.header, spec), _width_issues(table)
    if header:  # cells cannot be checked against columns that are not there
        return Inspection(report(header + widths, len(table.rows), table.header, table.format,
                                 {}, ignored), spec, rules, (), {})
    findings = _Findings()
    parsed = _parse_rows(table, rules, findings)
    _outliers(parsed, rules, findings, findings.flags())
    _duplicates(parsed, findings)
    label_at = next(i for i, r in enumerate(rules) if r.role == "label")
    labels = {"0": 0, "1": 0}
    for row in parsed:
        value = row.values[label_at]
        if isinstance(value, float):
            labels[number_text(value)] += 1
    issues = widths + findings.issues() + _label_balance(labels, spec.label)
    if not table.rows:
        issues.append(Issue("schema", None, (), 0,
                            "the file has a header but no data rows", True))
    issues.sort(key=lambda i: (not i.blocking, ISSUE_KINDS.index(i.kind), i.column or ""))
    return Inspection(report(issues, len(table.rows), table.header, table.format, labels,
                             ignored), spec, rules, tuple(parsed), findings.flags())

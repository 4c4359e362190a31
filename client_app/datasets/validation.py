"""The validation report of a site's data file and the operator's policy for its issues.

:func:`client_app.datasets.inspection.inspect` checks a file against a study plan and produces a
:class:`ValidationReport`: a list of :class:`Issue` objects, each naming its kind, its column
and the data rows at fault, never a cell value or a patient id. Row numbers follow the one rule
of every data message: row 1 is the first row after the header (blank rows counted); what is
about the header says "header", and what only a position in the file can say (an undecodable
byte, a broken quote) says "line N". Blocking issues (an unreadable file, a missing column, text
in a numeric column...) stop any registration. The others need a decision, recorded as a
:class:`Policy`: drop the rows, impute (median or mean of the column's other values), clip to
the allowed range, keep outliers, or refuse the file. The default policy refuses every issue
except outliers, which it keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal

from common.errors import ErrorCode, TesseraError

ISSUE_KINDS = (
    "encoding", "delimiter", "schema", "type", "missing", "out_of_range", "outlier",
    "duplicate_row", "duplicate_id", "label_balance",
)
#: Policy field name -> the values it allows (first: the default), for forms and commands.
POLICY_CHOICES: dict[str, tuple[str, ...]] = {
    "missing": ("refuse", "drop", "impute_median", "impute_mean"),
    "out_of_range": ("refuse", "drop", "clip"),
    "outliers": ("keep", "drop", "refuse"),
    "duplicates": ("refuse", "drop"),
}
#: Issue kind -> the policy field that decides what happens to it.
POLICY_FIELD: dict[str, str] = {
    "missing": "missing",
    "out_of_range": "out_of_range",
    "outlier": "outliers",
    "duplicate_row": "duplicates",
    "duplicate_id": "duplicates",
}
MAX_LISTED_ROWS = 20


@dataclass(frozen=True)
class Issue:
    """One problem of a data file: kind, column, the first rows at fault and their count."""

    kind: str
    column: str | None
    rows: tuple[int, ...]
    count: int
    message: str
    blocking: bool

    def __post_init__(self) -> None:
        if self.kind not in ISSUE_KINDS:
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"Issue.kind: unknown kind {self.kind!r}")
        if len(self.rows) > MAX_LISTED_ROWS:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"Issue.rows: at most {MAX_LISTED_ROWS} row numbers")

    def to_json(self) -> dict[str, object]:
        """The issue as JSON-able data (row numbers and names only)."""
        return {**asdict(self), "rows": list(self.rows)}

    def line(self) -> str:
        """The issue as one line of text."""
        return f"{'BLOCKING ' if self.blocking else ''}{self.kind}: {self.message}"


def rows_text(rows: tuple[int, ...], count: int) -> str:
    """``rows 3, 7`` / ``row 3``, saying how many more there are beyond the listed ones."""
    listed = ", ".join(str(r) for r in rows)
    word = "row" if count == 1 else "rows"
    more = f" and {count - len(rows)} more" if count > len(rows) else ""
    return f"{word} {listed}{more}"


@dataclass(frozen=True)
class ValidationReport:
    """What validation found in one data file (counts, row numbers and column names only)."""

    source_name: str
    source_hash: str
    source_format: str
    rows: int
    columns: tuple[str, ...]
    issues: tuple[Issue, ...]
    label_counts: dict[str, int]
    ignored_columns: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the file has no issue at all."""
        return not self.issues

    @property
    def blocking(self) -> bool:
        """True when an issue no policy can fix is present."""
        return any(issue.blocking for issue in self.issues)

    @property
    def issue_kinds(self) -> set[str]:
        """Kinds of the present issues that need a policy decision."""
        return {i.kind for i in self.issues if not i.blocking and i.kind in POLICY_FIELD}

    @property
    def policy_fields(self) -> set[str]:
        """The :class:`Policy` fields whose choice matters for this file."""
        return {POLICY_FIELD[kind] for kind in self.issue_kinds}

    def issue_counts(self) -> dict[str, int]:
        """Affected rows or cells per issue kind."""
        counts: dict[str, int] = {}
        for issue in self.issues:
            counts[issue.kind] = counts.get(issue.kind, 0) + issue.count
        return counts

    def summary(self) -> dict[str, object]:
        """The report as JSON-able counts (what the dataset version and the event keep)."""
        return {
            "source_name": self.source_name,
            "source_hash": self.source_hash,
            "source_format": self.source_format,
            "rows": self.rows,
            "columns": len(self.columns),
            "ignored_columns": len(self.ignored_columns),
            "blocking": self.blocking,
            "issues": self.issue_counts(),
            "issue_list": [
                {"kind": i.kind, "column": i.column, "count": i.count, "blocking": i.blocking}
                for i in self.issues
            ],
            "label_counts": dict(self.label_counts),
        }

    def to_json(self) -> dict[str, object]:
        """The whole report, issues with their row numbers, as JSON-able data."""
        return {
            "source_name": self.source_name, "source_hash": self.source_hash,
            "source_format": self.source_format, "rows": self.rows,
            "columns": list(self.columns), "ignored_columns": list(self.ignored_columns),
            "ok": self.ok, "blocking": self.blocking,
            "issues": [i.to_json() for i in self.issues],
            "label_counts": dict(self.label_counts),
        }

    def to_text(self) -> str:
        """A human report: a header line, then one line per issue."""
        blocking = sum(1 for i in self.issues if i.blocking)
        found = (f"{len(self.issues)} issue{'s' if len(self.issues) != 1 else ''}"
                 f"{f' ({blocking} blocking)' if blocking else ''}" if self.issues else "no issues")
        lines = [f"{self.source_name}: {self.source_format}, {self.rows} data rows, "
                 f"{len(self.columns)} columns; {found}"]
        lines.extend(f"  {issue.line()}" for issue in self.issues)
        if self.label_counts:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.label_counts.items()))
            lines.append(f"  labels: {counts}")
        if self.ignored_columns:
            lines.append(f"  ignored columns (not in the plan): {', '.join(self.ignored_columns)}")
        return "\n".join(lines)


MissingChoice = Literal["refuse", "drop", "impute_median", "impute_mean"]
RangeChoice = Literal["refuse", "drop", "clip"]
OutlierChoice = Literal["keep", "drop", "refuse"]
DuplicateChoice = Literal["refuse", "drop"]


@dataclass(frozen=True)
class Policy:
    """What to do with each kind of fixable issue (see :data:`POLICY_CHOICES`)."""

    missing: MissingChoice = "refuse"
    out_of_range: RangeChoice = "refuse"
    outliers: OutlierChoice = "keep"
    duplicates: DuplicateChoice = "refuse"

    def __post_init__(self) -> None:
        for name, allowed in POLICY_CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise TesseraError(
                    ErrorCode.CONFIG_INVALID,
                    f"policy.{name}: must be one of {', '.join(allowed)}, got {value!r}",
                )

    def decision(self, kind: str) -> str:
        """The choice that applies to issues of ``kind``."""
        return str(getattr(self, POLICY_FIELD[kind]))

    def to_json(self) -> dict[str, str]:
        """The policy as JSON-able data."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Policy:
        """A policy from :meth:`to_json` data (missing fields take their default)."""
        unknown = sorted(set(data) - set(POLICY_CHOICES))
        if unknown:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"policy: unknown field(s) {', '.join(unknown)}")
        for name, value in data.items():
            if not isinstance(value, str):
                raise TesseraError(ErrorCode.CONFIG_INVALID, f"policy.{name}: must be a string")
        return cls(**data)  # type: ignore[arg-type]  # values checked in __post_init__

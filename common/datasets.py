"""Tabular datasets: the bundled real datasets, site CSV files, partitions and splits.

A :class:`TableData` is one table of patients: ids, a float64 feature matrix, 0/1 labels and,
optionally, the values of a sensitive column (kept as strings, for fairness metrics). Site
files are CSV with a ``patient_id`` column; reading one validates it against the study plan's
dataset spec and reports problems by row number and column name, never by cell value, because
cell values are patient data. Row 1 is the first row after the header (blank rows counted, so
row N is the spreadsheet's row N + 1), the rule of every data message (prediction inputs and
the site's dataset checks count the same way); a header problem says "header".
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ErrorCode, TesseraError
from common.plan import DatasetSpec

PATIENT_ID = "patient_id"
_BUNDLED = ("breast_cancer", "diabetes", "digits")
_MAX_DRAWS = 1000


@dataclass(frozen=True, eq=False)
class TableData:
    """One table of patients, with features in ``features`` order."""

    patient_ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]
    label: str
    sensitive: str | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.patient_ids)
        if self.X.ndim != 2 or self.X.shape != (n, len(self.features)):
            raise TesseraError(
                ErrorCode.DATA_INVALID, "TableData.X: shape must be (rows, len(features))"
            )
        if self.X.dtype != np.float64 or self.y.dtype != np.int64:
            raise TesseraError(ErrorCode.DATA_INVALID, "TableData: X must be float64, y int64")
        if self.y.shape != (n,) or not np.isin(self.y, (0, 1)).all():
            raise TesseraError(ErrorCode.DATA_INVALID, "TableData.y: must be one 0/1 per row")
        if (self.sensitive is None) != (self.groups is None):
            raise TesseraError(
                ErrorCode.DATA_INVALID, "TableData.groups: required exactly when sensitive is set"
            )
        if self.groups is not None and self.groups.shape != (n,):
            raise TesseraError(ErrorCode.DATA_INVALID, "TableData.groups: must be one per row")

    @property
    def n_rows(self) -> int:
        """Number of patients (rows)."""
        return len(self.patient_ids)

    def take(self, rows: np.ndarray) -> TableData:
        """The sub-table of the given row indices, in that order."""
        index = np.asarray(rows, dtype=np.int64)
        return TableData(
            patient_ids=self.patient_ids[index],
            X=self.X[index],
            y=self.y[index],
            features=self.features,
            label=self.label,
            sensitive=self.sensitive,
            groups=None if self.groups is None else self.groups[index],
        )


def _ids(n: int) -> np.ndarray:
    return np.array([f"P{i:05d}" for i in range(1, n + 1)], dtype=str)


def _group_text(value: float) -> str:
    """Canonical text of a numeric category: 2.0 -> "2", 0.5 -> "0.5"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def bundled_names() -> list[str]:
    """Names of the real datasets shipped with scikit-learn that Tessera can load."""
    return list(_BUNDLED)


def load_bundled(name: str) -> TableData:
    """Load a bundled dataset from scikit-learn's packaged files (no network)."""
    from sklearn import datasets  # imported lazily: only demos and tests need it

    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer()
        features = tuple(str(f).replace(" ", "_") for f in bunch.feature_names)
        X = np.asarray(bunch.data, dtype=np.float64)
        y = np.asarray(bunch.target, dtype=np.int64)  # 1 = benign
        return TableData(_ids(len(y)), X, y, features, "benign")
    if name == "diabetes":
        bunch = datasets.load_diabetes(scaled=False)
        features = tuple(str(f) for f in bunch.feature_names)
        X = np.asarray(bunch.data, dtype=np.float64)
        target = np.asarray(bunch.target, dtype=np.float64)
        y = (target > np.median(target)).astype(np.int64)
        groups = np.array([_group_text(v) for v in X[:, features.index("sex")]], dtype=str)
        return TableData(_ids(len(y)), X, y, features, "progression_high", "sex", groups)
    if name == "digits":
        # 8x8 greyscale scans of handwritten digits (0-16 per pixel); the label is binary
        # (odd digit), so evaluation, calibration and the KPIs work as for every study.
        bunch = datasets.load_digits()
        features = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
        X = np.asarray(bunch.data, dtype=np.float64)
        y = (np.asarray(bunch.target) % 2).astype(np.int64)
        return TableData(_ids(len(y)), X, y, features, "odd")
    raise TesseraError(
        ErrorCode.NOT_FOUND,
        f"no bundled dataset named {name!r}; available: {', '.join(_BUNDLED)}",
    )


def select(data: TableData, spec: DatasetSpec) -> TableData:
    """Keep exactly the plan's features (in plan order) and its sensitive column."""
    if spec.label != data.label:
        raise TesseraError(
            ErrorCode.DATA_INVALID, f"dataset: label column {spec.label!r} not found"
        )
    missing = [f for f in spec.features if f not in data.features]
    if missing:
        raise TesseraError(
            ErrorCode.DATA_INVALID, f"dataset: feature column {missing[0]!r} not found"
        )
    X = data.X[:, [data.features.index(f) for f in spec.features]]
    groups: np.ndarray | None = None
    if spec.sensitive is not None:
        if spec.sensitive == data.sensitive and data.groups is not None:
            groups = data.groups.copy()
        elif spec.sensitive in data.features:
            column = data.X[:, data.features.index(spec.sensitive)]
            groups = np.array([_group_text(v) for v in column], dtype=str)
        else:
            raise TesseraError(
                ErrorCode.DATA_INVALID, f"dataset: sensitive column {spec.sensitive!r} not found"
            )
    return TableData(
        patient_ids=data.patient_ids.copy(),
        X=np.ascontiguousarray(X, dtype=np.float64),
        y=data.y.copy(),
        features=tuple(spec.features),
        label=spec.label,
        sensitive=spec.sensitive,
        groups=groups,
    )


def partition_indices(
    y: np.ndarray,
    n_sites: int,
    *,
    seed: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    min_per_site: int = 20,
) -> list[np.ndarray]:
    """Split row indices into ``n_sites`` disjoint, sorted parts covering every row.

    ``iid`` deals each class's shuffled rows round-robin, so sites get near-equal sizes and
    label mixes. ``dirichlet`` gives each site a Dirichlet(``alpha``) share of each class
    (label skew), redrawing until every site has ``min_per_site`` rows and every label.
    """
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "y: must be a 1-D array of labels")
    if n_sites < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "n_sites: must be at least 1")
    if scheme not in ("iid", "dirichlet"):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "scheme: must be 'iid' or 'dirichlet'")
    if not alpha > 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "alpha: must be greater than 0")
    if min_per_site < 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "min_per_site: must not be negative")
    classes, counts = np.unique(labels, return_counts=True)
    if len(labels) < n_sites * min_per_site or (counts < n_sites).any():
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"n_sites: {len(labels)} rows cannot give {n_sites} sites at least "
            f"{min_per_site} rows and every label each",
        )
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    if scheme == "iid":
        dealt = np.concatenate(by_class) if by_class else np.zeros(0, dtype=np.int64)
        return [np.sort(dealt[site::n_sites]) for site in range(n_sites)]
    for _ in range(_MAX_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_sites)]
        for rows in by_class:
            shares = rng.dirichlet(np.full(n_sites, alpha))
            cuts = np.floor(np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
            for site, chunk in enumerate(np.split(rows, cuts)):
                parts[site].append(chunk)
        sites = [np.sort(np.concatenate(chunks)) for chunks in parts]
        if all(
            len(rows) >= min_per_site and len(np.unique(labels[rows])) == len(classes)
            for rows in sites
        ):
            return sites
    raise TesseraError(
        ErrorCode.CONFIG_INVALID,
        f"alpha: no Dirichlet({alpha}) partition into {n_sites} sites gave every site "
        f"{min_per_site} rows and every label in {_MAX_DRAWS} draws; raise alpha",
    )


def _number_text(value: float) -> str:
    """Shortest exact text of a float, without a trailing '.0' for whole numbers."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(float(value))


def csv_bytes(data: TableData, rows: np.ndarray | None = None) -> bytes:
    """The table (or the given rows of it) as UTF-8 CSV bytes."""
    table = data if rows is None else data.take(rows)
    extra: list[str] = []
    if table.sensitive is not None and table.sensitive not in table.features:
        extra = [table.sensitive]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([PATIENT_ID, *table.features, *extra, table.label])
    for i in range(table.n_rows):
        cells = [_number_text(float(v)) for v in table.X[i]]
        sensitive = [str(table.groups[i])] if extra and table.groups is not None else []
        writer.writerow([str(table.patient_ids[i]), *cells, *sensitive, str(int(table.y[i]))])
    return buffer.getvalue().encode("utf-8")


def write_csv(path: Path, data: TableData, rows: np.ndarray | None = None) -> None:
    """Write the table (or the given rows of it) as a site CSV file."""
    Path(path).write_bytes(csv_bytes(data, rows))


def _bad(source: str, message: str) -> TesseraError:
    return TesseraError(ErrorCode.DATA_INVALID, f"{source}: {message}")


def _header(rows: list[list[str]], spec: DatasetSpec, source: str) -> dict[str, int]:
    if not rows:
        raise _bad(source, "empty file: no header row")
    names = [cell.strip() for cell in rows[0]]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise _bad(source, f"header: column {duplicated[0]!r} appears more than once")
    required = [PATIENT_ID, *spec.features, spec.label]
    if spec.sensitive is not None and spec.sensitive not in required:
        required.append(spec.sensitive)
    missing = [name for name in required if name not in names]
    if missing:
        raise _bad(source, f"missing required column(s): {', '.join(map(repr, missing))}")
    return {name: names.index(name) for name in required}


def _number(cell: str, source: str, row: int, column: str) -> float:
    text = cell.strip()
    if not text:
        raise _bad(source, f"row {row}, column {column!r}: empty")
    try:
        value = float(text)
    except ValueError:
        raise _bad(source, f"row {row}, column {column!r}: not a number") from None
    if not np.isfinite(value):
        raise _bad(source, f"row {row}, column {column!r}: not a finite number")
    return value


def _parse_row(
    row: list[str], columns: dict[str, int], spec: DatasetSpec, where: tuple[str, int]
) -> tuple[str, list[float], int, str | None]:
    source, number = where
    patient = row[columns[PATIENT_ID]].strip()
    if not patient:
        raise _bad(source, f"row {number}, column {PATIENT_ID!r}: empty")
    values = [_number(row[columns[f]], source, number, f) for f in spec.features]
    label = _number(row[columns[spec.label]], source, number, spec.label)
    if label not in (0.0, 1.0):
        raise _bad(source, f"row {number}, column {spec.label!r}: must be 0 or 1")
    group: str | None = None
    if spec.sensitive in spec.features:
        group = _group_text(values[spec.features.index(spec.sensitive)])
    elif spec.sensitive is not None:
        group = row[columns[spec.sensitive]].strip()
        if not group:
            raise _bad(source, f"row {number}, column {spec.sensitive!r}: empty")
    return patient, values, int(label), group


def read_csv_bytes(data: bytes, spec: DatasetSpec, *, source_name: str) -> TableData:
    """Parse a site CSV and validate it against the plan's dataset spec.

    Columns beyond the plan's are ignored; blank lines are skipped. The result holds exactly
    the plan's features, in plan order.
    """
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except UnicodeDecodeError:
        raise _bad(source_name, "not UTF-8 text") from None
    except csv.Error:
        raise _bad(source_name, "not valid CSV") from None
    columns = _header(rows, spec, source_name)
    parsed: list[tuple[str, list[float], int, str | None]] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[1:], start=1):  # row 1: the first after the header
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(rows[0]):
            raise _bad(source_name, f"row {number}: {len(row)} cells, header {len(rows[0])}")
        record = _parse_row(row, columns, spec, (source_name, number))
        if record[0] in seen:
            raise _bad(source_name, f"row {number}, column {PATIENT_ID!r}: duplicate id")
        seen.add(record[0])
        parsed.append(record)
    if not parsed:
        raise _bad(source_name, "no data rows")
    ids, matrix, labels, groups = zip(*parsed, strict=True)
    return TableData(
        patient_ids=np.array(ids, dtype=str),
        X=np.array(matrix, dtype=np.float64).reshape(len(ids), len(spec.features)),
        y=np.array(labels, dtype=np.int64),
        features=tuple(spec.features),
        label=spec.label,
        sensitive=spec.sensitive,
        groups=None if spec.sensitive is None else np.array(groups, dtype=str),
    )


def read_csv(path: Path, spec: DatasetSpec) -> TableData:
    """Read and validate a site CSV file; messages name the file, not its folder."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND, f"data file not found: {file.name}") from None
    except IsADirectoryError:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"data file {file.name}: is a directory, not a file") from None
    return read_csv_bytes(data, spec, source_name=file.name)


def content_hash(data: bytes) -> str:
    """SHA-256 hex of a file's bytes, used as the dataset version."""
    return hashlib.sha256(data).hexdigest()


def stratified_split(
    y: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) row indices with each label's share of rows in the test part.

    Every label with at least two rows appears in both parts.
    """
    if not 0.0 < test_fraction < 1.0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "test_fraction: must be in (0, 1)")
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "y: must be a 1-D array of labels")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    test: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_test = round(len(rows) * test_fraction)
        if len(rows) >= 2:
            n_test = min(max(n_test, 1), len(rows) - 1)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))

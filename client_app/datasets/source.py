"""Reading a site's data file, CSV or Parquet, into a grid of text cells.

Both formats become one :class:`SourceTable`: the header and the data rows as text cells, each
data row with its number (row 1 is the first row after the header; blank CSV rows are skipped
but keep their numbers, so row N is the spreadsheet's row N + 1). Problems only a position in
the file can locate (an undecodable byte, a broken quote) say "line N". Parquet values are
rendered as text the way the canonical CSV writes numbers (shortest exact form, whole numbers
without ``.0``, nulls and NaN as empty cells), so the same table gives the same cleaned content
whatever its format. A file that cannot be read as a table (not UTF-8, another delimiter, not
Parquet, no header) is returned as an :class:`Unreadable` that says why, never raised: the
validation report lists it as a blocking issue. Nothing here ever quotes a cell value.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

SourceFormat = Literal["csv", "parquet"]
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
#: Delimiters a spreadsheet export often uses instead of the comma.
OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}


@dataclass(frozen=True)
class SourceTable:
    """A data file as text: header cells and (row number, cells) per data row."""

    format: SourceFormat
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Unreadable:
    """Why a file is not a table: an issue kind, a message and the rows at fault."""

    format: SourceFormat
    kind: str
    message: str
    rows: tuple[int, ...] = ()


def number_text(value: float) -> str:
    """Shortest exact text of a float, without a trailing '.0' for whole numbers."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(float(value))


def source_format(content: bytes, name: str) -> SourceFormat:
    """Parquet when the bytes carry its magic number or the name its suffix, else CSV."""
    if content.startswith(PARQUET_MAGIC) or name.lower().endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "csv"


def read_source(content: bytes, *, name: str) -> SourceTable | Unreadable:
    """The file's cells, or why it cannot be read as a table."""
    if source_format(content, name) == "parquet":
        return _read_parquet(content)
    return _read_csv(content)


def _line_of(content: bytes, offset: int) -> int:
    return content.count(b"\n", 0, offset) + 1


def _read_csv(content: bytes) -> SourceTable | Unreadable:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return Unreadable("csv", "encoding", "the file is UTF-16 text; save it as UTF-8 CSV")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = _line_of(content, error.start)
        return Unreadable("csv", "encoding",
                          f"line {line}: the file is not UTF-8 text (first invalid byte on this "
                          "line); save it as UTF-8 CSV")
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, tuple[str, ...]]] = []
    try:
        for number, record in enumerate(reader, start=0):  # 0: the header, 1: the first row
            if any(cell.strip() for cell in record):
                records.append((number, tuple(record)))
    except csv.Error as error:
        line = reader.line_num
        reason = "it contains NUL bytes" if "NUL" in str(error) else "a cell cannot be parsed"
        return Unreadable("csv", "encoding",
                          f"line {line}: not a readable CSV file ({reason})")
    if not records:
        return Unreadable("csv", "schema", "the file is empty: no header row")
    header_number, header = records[0]
    if header_number != 0:
        return Unreadable("csv", "schema", "line 1 is blank: the header must be the first line")
    delimiter = _other_delimiter(header)
    if delimiter is not None:
        return Unreadable("csv", "delimiter",
                          f"the header is one column separated by {delimiter}, not by "
                          "commas; save the file as comma-separated CSV")
    return SourceTable("csv", tuple(cell.strip() for cell in header), tuple(records[1:]))


def _other_delimiter(header: tuple[str, ...]) -> str | None:
    """The delimiter a header was written with when it is not the comma, else None."""
    if len(header) != 1:
        return None
    for delimiter, label in OTHER_DELIMITERS.items():
        if delimiter in header[0]:
            return label
    return None


def _parquet_cell(value: object) -> str | None:
    """Canonical text of one Parquet value; None when it has no text form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else number_text(value) if math.isfinite(value) else "inf"
    if isinstance(value, Decimal):
        return number_text(float(value)) if value.is_finite() else "inf"
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return None


def _read_parquet(content: bytes) -> SourceTable | Unreadable:
    import pyarrow as pa  # imported lazily: only Parquet input needs it
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(content))
    except (pa.ArrowException, OSError, ValueError):
        return Unreadable("parquet", "encoding",
                          "not a readable Parquet file (damaged or not Parquet)")
    header = tuple(str(name).strip() for name in table.column_names)
    if not header:
        return Unreadable("parquet", "schema", "the Parquet file has no columns")
    columns: list[list[str]] = []
    for name, column in zip(header, table.columns, strict=True):
        cells: list[str] = []
        for index, value in enumerate(column.to_pylist()):
            text = _parquet_cell(value)
            if text is None:
                return Unreadable("parquet", "encoding",
                                  f"row {index + 1}, column {name!r}: a value of type "
                                  f"{column.type} has no text form", (index + 1,))
            cells.append(text)
        columns.append(cells)
    rows = tuple((index + 1, tuple(cells)) for index, cells in enumerate(zip(*columns,
                                                                           strict=True)))
    return SourceTable("parquet", header, rows)

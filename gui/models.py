"""The app's Qt table models: one generic model described by its columns, filled by set_rows.

Every table in the app is a :class:`RowsModel` over a list of frozen result records (dataset
versions, ledger entries, consent events...). The model never queries anything: a page
calls :meth:`RowsModel.set_rows` with what the facade returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)

Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


def display(value: object) -> str:
    """How a cell shows ``value``: local times to the second, floats to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Column:
    """One column: its header, how to get the cell's value from a row, and an optional tip."""

    title: str
    value: Callable[[Any], object]
    tooltip: Callable[[Any], str] | None = None
    numeric: bool = False


class RowsModel(QAbstractTableModel):
    """A read-only table of ``rows`` with the given ``columns``."""

    def __init__(self, columns: Sequence[Column], parent: Any = None) -> None:
        super().__init__(parent)
        self._columns = tuple(columns)
        self._rows: list[Any] = []

    def set_rows(self, rows: Sequence[Any]) -> None:
        """Replace every row."""
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def set_title(self, column: int, title: str) -> None:
        """Rename one column's header (e.g. after the plan's label names are known)."""
        columns = list(self._columns)
        old = columns[column]
        columns[column] = Column(title, old.value, old.tooltip, old.numeric)
        self._columns = tuple(columns)
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, column, column)

    def row(self, number: int) -> Any:
        """The record shown in row ``number``."""
        return self._rows[number]

    @property
    def rows(self) -> tuple[Any, ...]:
        return tuple(self._rows)

    def rowCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)) \
                or not (0 <= index.column() < len(self._columns)):
            return None
        column = self._columns[index.column()]
        record = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return display(column.value(record))
        if role == Qt.ItemDataRole.ToolTipRole and column.tooltip is not None:
            return column.tooltip(record)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            if 0 <= section < len(self._columns):
                return self._columns[section].title
            return None
        return str(section + 1) if 0 <= section < len(self._rows) else None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

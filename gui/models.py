"""The app's Qt table models: one generic model described by its columns, filled by set_rows.

Every table in the app is a :class:`RowsModel` over a list of frozen result records (dataset
versions, ledger entries, consent events...). The model never queries anything: a page
calls :meth:`RowsModel.set_rows` with what the facade returned.

Long lists (the audit trail, the ledger, dataset versions, consent events) are paged: a model
made with ``page_size`` holds every record but shows one page of them, so laying out and
painting the table costs the same for ten records or ten thousand
(:class:`gui.widgets.Pager` moves between pages).
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
    Signal,
)

from gui.text import tr

Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


def display(value: object) -> str:
    """How a cell shows ``value``: local times to the second, floats to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return tr("yes") if value else tr("no")
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


#: Rows on one page of a long list.
PAGE_SIZE = 200


class RowsModel(QAbstractTableModel):
    """A read-only table of ``rows`` with the given ``columns``; with ``page_size``, it shows
    one page of them at a time (``paged`` is emitted whenever the page or the rows change)."""

    paged = Signal()

    def __init__(self, columns: Sequence[Column], parent: Any = None, *,
                 page_size: int | None = None) -> None:
        super().__init__(parent)
        if page_size is not None and page_size < 1:
            raise ValueError("page_size: must be at least 1")
        self._columns = tuple(columns)
        self._all: list[Any] = []
        self._rows: list[Any] = []
        self._page_size = page_size
        self._page = 0

    def set_rows(self, rows: Sequence[Any], *, page: int | None = None) -> None:
        """Replace every row; stay on the current page (or the last one left), or go to
        ``page`` (negative counts from the end: -1 is the last page)."""
        self._all = list(rows)
        self._turn(self._page if page is None else page)

    def set_page(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped to the pages there are)."""
        self._turn(page)

    def _turn(self, page: int) -> None:
        if page < 0:
            page += self.pages
        page = min(max(page, 0), self.pages - 1)
        self.beginResetModel()
        self._page = page
        if self._page_size is None:
            self._rows = self._all
        else:
            start = page * self._page_size
            self._rows = self._all[start:start + self._page_size]
        self.endResetModel()
        self.paged.emit()

    @property
    def page(self) -> int:
        """The page shown (0-based)."""
        return self._page

    @property
    def pages(self) -> int:
        """How many pages the rows fill (at least one)."""
        if self._page_size is None or not self._all:
            return 1
        return -(-len(self._all) // self._page_size)

    @property
    def first(self) -> int:
        """The position in all rows of the first row shown."""
        return 0 if self._page_size is None else self._page * self._page_size

    @property
    def total(self) -> int:
        """How many rows there are on all pages."""
        return len(self._all)

    def set_title(self, column: int, title: str) -> None:
        """Rename one column's header (e.g. after the plan's label names are known)."""
        columns = list(self._columns)
        old = columns[column]
        columns[column] = Column(title, old.value, old.tooltip, old.numeric)
        self._columns = tuple(columns)
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, column, column)

    def row(self, number: int) -> Any:
        """The record shown in row ``number`` of the page."""
        return self._rows[number]

    @property
    def rows(self) -> tuple[Any, ...]:
        """Every record, on all pages."""
        return tuple(self._all)

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
        return str(self.first + section + 1) if 0 <= section < len(self._rows) else None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

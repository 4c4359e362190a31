"""Small widgets the pages share: shortened hashes with a copy button, a budget gauge,
copying a table's selected value, and the pager of long lists.

Hashes and fingerprints are shown as ``2a1f9c...d52d3`` (never wrapped mid-word); the full
value is in the tooltip and one click (or Ctrl+C on a table row) puts it on the clipboard.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import Gauge, short_hash
from gui.models import RowsModel
from gui.text import tr


def copy_text(text: str) -> None:
    """Put ``text`` on the clipboard."""
    QGuiApplication.clipboard().setText(text)


class HashLabel(QWidget):
    """A hash shortened to a readable form, with its full value and a Copy button."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.value = ""
        self.label = QLabel("-")
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setAccessibleName(name)
        self.copy_button = QToolButton()
        self.copy_button.setText(tr("Copy"))
        self.copy_button.setAccessibleName(tr("Copy the full {name}").format(name=name))
        self.copy_button.setToolTip(tr("Copy the full value to the clipboard"))
        self.copy_button.clicked.connect(lambda: copy_text(self.value))
        self.copy_button.setEnabled(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.copy_button)
        layout.addStretch(1)

    def set_value(self, value: str | None) -> None:
        self.value = value or ""
        self.label.setText(short_hash(self.value) or "-")
        self.label.setToolTip(self.value)
        self.copy_button.setEnabled(bool(self.value))


class GaugeBar(QProgressBar):
    """One dataset's budget: the bar shows the share used, the text says both ways."""

    def __init__(self, gauge: Gauge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gauge = gauge
        self.setRange(0, 100)
        self.setValue(min(round(gauge.fraction * 100), 100))
        self.setTextVisible(True)
        self.setFormat(tr("{dataset}: {used}% used").format(
            dataset=gauge.dataset, used=round(gauge.fraction * 100)))
        text = gauge.text()
        self.setToolTip(text)
        self.setAccessibleName(tr("Privacy budget of {dataset}").format(dataset=gauge.dataset))
        self.setAccessibleDescription(text)


def copy_on_ctrl_c(table: QTableView, value: object) -> None:
    """Ctrl+C on ``table`` copies ``value(row record)`` of the selected row."""

    def copy() -> None:
        rows = table.selectionModel().selectedRows()
        model = table.model()
        if rows and hasattr(model, "row"):
            copy_text(str(value(model.row(rows[0].row()))))  # type: ignore[operator]

    shortcut = QShortcut(QKeySequence.StandardKey.Copy, table)
    shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
    shortcut.activated.connect(copy)


class Pager(QWidget):
    """Previous / next page of a paged :class:`~gui.models.RowsModel`, and which rows show
    ("Rows 201-400 of 5000"); hidden while everything fits on one page. Alt+R and Alt+X
    turn the pages from the keyboard."""

    def __init__(self, model: RowsModel, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.previous = QPushButton(tr("P&revious page"))
        self.previous.setToolTip(tr("The page before this one (Alt+R)"))
        self.previous.setAccessibleName(tr("Previous page of {what}").format(what=what))
        self.next = QPushButton(tr("Ne&xt page"))
        self.next.setToolTip(tr("The page after this one (Alt+X)"))
        self.next.setAccessibleName(tr("Next page of {what}").format(what=what))
        self.label = QLabel()
        self.label.setAccessibleName(tr("Rows shown of {what}").format(what=what))
        self.previous.clicked.connect(lambda: model.set_page(model.page - 1))
        self.next.clicked.connect(lambda: model.set_page(model.page + 1))
        model.paged.connect(self._update)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.previous)
        layout.addWidget(self.label)
        layout.addWidget(self.next)
        layout.addStretch(1)
        self._update()

    def _update(self) -> None:
        model = self.model
        self.setVisible(model.pages > 1)
        first = model.first + 1 if model.total else 0
        self.label.setText(tr("Rows {first}-{last} of {total} (page {page} of {pages})").format(
            first=first, last=model.first + model.rowCount(), total=model.total,
            page=model.page + 1, pages=model.pages))
        self.previous.setEnabled(model.page > 0)
        self.next.setEnabled(model.page < model.pages - 1)


def paged(table: QTableView, model: RowsModel, what: str) -> tuple[QWidget, Pager]:
    """``table`` over the paged ``model`` with its pager under it, in one widget. Columns
    sized to their contents measure the rows in view only, not the whole page."""
    table.horizontalHeader().setResizeContentsPrecision(0)
    box = QWidget()
    pager = Pager(model, what)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(table, 1)
    layout.addWidget(pager)
    return box, pager

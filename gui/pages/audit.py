"""Audit page: the site's records as plain sentences with filters, the raw record of the
selected one, and verifying the signed audit log.

The records are what the site store holds and mirrors into ``audit/site.log`` (approvals,
privacy spend, events); the log's payloads are encrypted to the auditor, so the site shows
its own store and verifies the log's chain and signatures, which needs no key. The
verification counts the log's records, which can differ from the store's list (the log
starts when the site got its kit and also holds checkpoints): the result says so.
"""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import Activity, SiteOperator, VerifyReport
from gui.access import enable, gate
from gui.models import PAGE_SIZE, Column, RowsModel
from gui.pages.base import Page, heading
from gui.text import noop, tr
from gui.theme import status_colour
from gui.widgets import HashLabel, copy_on_ctrl_c, paged

ALL_KINDS = noop("All kinds")


def verdict(report: VerifyReport) -> str:
    """One line on the log's integrity: INTACT, or the first fault and where it is."""
    if report.ok:
        tail = (tr("every record is covered by a signed checkpoint") if report.all_checkpointed
                else tr("the newest records are not yet covered by a signed checkpoint"))
        return tr("INTACT: {records} records verified; {tail}. (The log holds the records "
                  "written since the site's kit was installed, so its count can differ from "
                  "the list below.)").format(records=report.records, tail=tail)
    where = tr(" at line {line}").format(line=report.line) if report.line is not None else ""
    fault = report.fault.value if report.fault is not None else tr("fault")
    return tr("FAULT ({fault}){where}: {message}").format(fault=fault, where=where,
                                                         message=report.message)


def matches(item: Activity, *, kind: str | None, text: str) -> bool:
    """Whether ``item`` passes the kind and free-text filters (case-insensitive)."""
    if kind is not None and item.kind != kind:
        return False
    needle = text.strip().lower()
    haystack = " ".join((item.kind, item.actor, item.plan_hash or "", item.sentence,
                         item.raw)).lower()
    return not needle or needle in haystack


class AuditPage(Page):
    title = noop("Audit")
    key = "audit"
    icon = "SP_FileDialogDetailedView"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.items: list[Activity] = []
        self.report: VerifyReport | None = None
        self.kind_combo = QComboBox()
        self.kind_combo.setAccessibleName(tr("Record kind"))
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._filter(page=0))
        kind_label = QLabel(tr("&Kind:"))
        kind_label.setBuddy(self.kind_combo)
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText(tr("Filter by text (actor, plan hash, details)"))
        self.text_filter.setClearButtonEnabled(True)
        self.text_filter.setAccessibleName(tr("Text filter"))
        self.text_filter.textChanged.connect(lambda _t: self._filter(page=0))
        text_label = QLabel(tr("&Filter:"))
        text_label.setBuddy(self.text_filter)
        self.verify_button = QPushButton(tr("&Verify integrity"))
        gate(self.verify_button, operator, "gui audit.verify",
             tooltip=tr("Check the audit log's hash chain, checkpoints and signatures"))
        self.verify_button.clicked.connect(self.verify)
        self.result = QLabel(tr("The audit log has not been verified in this session."))
        self.result.setWordWrap(True)
        self.result.setAccessibleName(tr("Verification result"))
        self.count = QLabel()
        self.model = RowsModel([
            Column(tr("time"), lambda i: i.at),
            Column(tr("what happened"), lambda i: i.sentence, tooltip=lambda i: i.sentence),
            Column(tr("by"), lambda i: i.actor),
            Column(tr("study"), lambda i: i.study or "", tooltip=lambda i: i.plan_hash or ""),
        ], self, page_size=PAGE_SIZE)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(False)
        self.table.setAccessibleName(tr("Audit records"))
        self.table.selectionModel().selectionChanged.connect(self._selected)
        copy_on_ctrl_c(self.table, lambda i: i.raw)
        self.plan_hash = HashLabel(tr("plan hash"))
        self.raw = QPlainTextEdit()
        self.raw.setReadOnly(True)
        self.raw.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.raw.setAccessibleName(tr("Raw record"))
        self.raw.setPlaceholderText(tr("Select a record to see it as the store holds it."))
        raw_box = QWidget()
        raw_layout = QVBoxLayout(raw_box)
        raw_layout.setContentsMargins(0, 0, 0, 0)
        raw_layout.addWidget(QLabel(tr("Raw record (as stored; Ctrl+C in the list copies it)")))
        raw_layout.addWidget(self.plan_hash)
        raw_layout.addWidget(self.raw, 1)
        self.split = QSplitter()
        table_box, self.pager = paged(self.table, self.model, tr("audit records"))
        self.model.paged.connect(self._selected)
        self.split.addWidget(table_box)
        self.split.addWidget(raw_box)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 1)
        self.runner.busy_changed.connect(lambda busy: enable(self.verify_button, not busy))

        filters = QHBoxLayout()
        filters.addWidget(kind_label)
        filters.addWidget(self.kind_combo)
        filters.addWidget(text_label)
        filters.addWidget(self.text_filter, 1)
        filters.addWidget(self.count)
        verify = QHBoxLayout()
        verify.addWidget(self.verify_button)
        verify.addWidget(self.result, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Audit trail")))
        layout.addLayout(verify)
        layout.addLayout(filters)
        layout.addWidget(self.split, 1)

    def fetch(self) -> list[Activity]:
        return list(reversed(self.operator.activity()))

    def show_data(self, data: list[Activity]) -> None:
        self.items = data
        chosen = self.kind_combo.currentText()
        self.kind_combo.blockSignals(True)
        self.kind_combo.clear()
        self.kind_combo.addItems([tr(ALL_KINDS), *sorted({i.kind for i in self.items})])
        self.kind_combo.setCurrentIndex(max(self.kind_combo.findText(chosen), 0))
        self.kind_combo.blockSignals(False)
        self._filter()

    def _filter(self, *, page: int | None = None) -> None:
        kind = self.kind_combo.currentText()
        shown = [i for i in self.items
                 if matches(i, kind=None if kind in (tr(ALL_KINDS), "") else kind,
                            text=self.text_filter.text())]
        self.model.set_rows(shown, page=page)
        self.count.setText(tr("{shown} of {total} records").format(shown=len(shown),
                                                                   total=len(self.items)))
        self._selected()

    def selected(self) -> Activity | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.row(rows[0].row()) if rows else None

    def _selected(self) -> None:
        item = self.selected()
        self.raw.setPlainText(item.raw if item is not None else "")
        self.plan_hash.set_value(item.plan_hash if item is not None else None)

    def verify(self) -> None:
        """Verify the audit log in the background."""
        self.result.setText(tr("Verifying..."))
        self.runner.start("verify", lambda _w: self.operator.verify_audit(),
                          on_done=self._verified, on_error=self._not_verified)

    def _verified(self, report: VerifyReport) -> None:
        self.report = report
        self._show_result(verdict(report), level="ok" if report.ok else "critical")

    def _not_verified(self, code: str, message: str) -> None:
        self._show_result(tr("Not verified: {message}").format(message=message),
                          level="warning")

    def _show_result(self, text: str, *, level: str) -> None:
        """The verdict in its status colour (the theme's, readable on the window)."""
        palette = self.result.palette()
        palette.setColor(QPalette.ColorRole.WindowText, status_colour(level))
        self.result.setPalette(palette)
        self.result.setText(text)

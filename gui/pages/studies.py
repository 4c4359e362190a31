"""Studies page: the plans this site received, their summary and diff, and the decisions."""

from __future__ import annotations

import html

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import Decision, ReceivedPlan, SiteOperator
from gui import dialogs
from gui.access import enable, gate
from gui.models import Column, RowsModel, display
from gui.pages.base import Page, heading

_VERBS = {"approved": "Approve", "rejected": "Reject", "revoked": "Revoke"}


def summary_html(plan: ReceivedPlan) -> str:
    """The plan's review summary as an HTML table (palette colours, no styling of its own)."""
    received = f"{display(plan.received_at)} ({plan.source})"
    lines = [("status", plan.status), ("received", received), *plan.summary.lines()]
    rows = "".join(f"<tr><th align='left' valign='top'>{html.escape(label)}</th>"
                   f"<td>{html.escape(value)}</td></tr>" for label, value in lines)
    return f"<table cellspacing='4'>{rows}</table>"


class StudiesPage(Page):
    title = "Studies"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.model = RowsModel([
            Column("received", lambda p: p.received_at),
            Column("study", lambda p: p.study),
            Column("plan hash", lambda p: p.plan_hash[:16] + "...", tooltip=lambda p: p.plan_hash),
            Column("status", lambda p: p.status),
            Column("source", lambda p: p.source),
        ], self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAccessibleName("Received study plans")
        self.table.selectionModel().selectionChanged.connect(self._selected)
        self.summary = QTextBrowser()
        self.summary.setAccessibleName("Plan summary")
        self.diff = QPlainTextEdit()
        self.diff.setReadOnly(True)
        self.diff.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.diff.setAccessibleName("Changes against the previous plan")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.summary, "&Summary")
        self.tabs.addTab(self.diff, "&Changes")

        self.import_button = QPushButton("&Import plan...")
        gate(self.import_button, operator, "gui studies.receive",
             tooltip="Add a study plan file (TOML) to this site's inbox")
        self.import_button.clicked.connect(self._import)
        self.buttons: dict[str, QPushButton] = {}
        for decision, label in (("approved", "&Approve"), ("rejected", "&Reject"),
                                ("revoked", "Re&voke")):
            button = QPushButton(label)
            gate(button, operator, f"gui studies.{_VERBS[decision].lower()}",
                 tooltip=f"{_VERBS[decision]} the selected plan hash")
            button.clicked.connect(lambda _=False, d=decision: self.decide(d))
            self.buttons[decision] = button
        self.approve_button = self.buttons["approved"]
        self.reject_button = self.buttons["rejected"]
        self.revoke_button = self.buttons["revoked"]

        bar = QHBoxLayout()
        bar.addWidget(self.import_button)
        bar.addStretch(1)
        for button in self.buttons.values():
            bar.addWidget(button)
        split = QSplitter()
        split.addWidget(self.table)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 4)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Studies"))
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        self._update_buttons()

    def selected(self) -> ReceivedPlan | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.row(rows[0].row()) if rows else None

    def select_hash(self, plan_hash: str) -> bool:
        """Select the plan with ``plan_hash`` (used by tests and screenshots)."""
        for number, plan in enumerate(self.model.rows):
            if plan.plan_hash == plan_hash:
                self.table.selectRow(number)
                return True
        return False

    def load(self) -> None:
        previous = self.selected()
        self.model.set_rows(self.operator.received_plans())
        if previous is not None and self.select_hash(previous.plan_hash):
            return
        if self.model.rowCount() and self.selected() is None:
            self.table.selectRow(0)
        self._selected()

    def _selected(self) -> None:
        plan = self.selected()
        self._update_buttons()
        if plan is None:
            self.summary.setHtml("<p>No study plan received yet. Import one with "
                                 "<i>Import plan...</i>.</p>")
            self.diff.setPlainText("")
            return
        self.summary.setHtml(summary_html(plan))
        try:
            diff = self.operator.plan_diff(plan.plan_hash)
        except Exception as exc:  # shown in place: the summary is still useful
            self.diff.setPlainText(dialogs.error_text(exc))
            return
        if diff.previous_hash is None:
            self.diff.setPlainText("This is the first plan of this study received here: "
                                   "nothing to compare.")
        else:
            changes = "\n".join(f"{c.path}: {c.old} -> {c.new}" for c in diff.changes)
            self.diff.setPlainText(f"Changes against {diff.previous_hash[:16]}...:\n"
                                   f"{changes or '(none)'}\n\n{diff.unified}")

    def _update_buttons(self) -> None:
        plan = self.selected()
        status = plan.status if plan is not None else None
        enable(self.approve_button, status is not None and status != "approved")
        enable(self.reject_button, status in ("pending",))
        enable(self.revoke_button, status == "approved")

    def decide(self, decision: Decision) -> None:
        """Ask for confirmation, then record the decision about the selected plan."""
        plan = self.selected()
        if plan is None:
            return
        verb = _VERBS[decision]
        consequence = {
            "approved": "The site agent will then take part in this study's rounds, and "
                        "spend privacy budget on them.",
            "rejected": "The site agent will refuse this plan.",
            "revoked": "The site agent will refuse further rounds of this plan.",
        }[decision]
        if not dialogs.confirm(self, f"{verb} study",
                               f"{verb} study '{plan.study}' with plan hash\n"
                               f"{plan.plan_hash}?\n\n{consequence}"):
            return
        if self.attempt(lambda: self.operator.decide(plan.plan_hash, decision)):
            self.refresh()
            self.changed.emit(f"study {plan.study} {plan.plan_hash[:12]} {decision}")

    def _import(self) -> None:
        path = dialogs.open_file(self, "Import a study plan", "Study plans (*.toml)")
        if path is None:
            return
        received: list[ReceivedPlan] = []
        if self.attempt(lambda: received.append(self.operator.receive_plan(path))):
            self.refresh()
            self.select_hash(received[0].plan_hash)
            self.changed.emit(f"study plan {received[0].plan_hash[:12]} received")

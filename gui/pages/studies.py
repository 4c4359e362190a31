"""Studies page: the plans this site received, their summary and diff, and the decisions."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import Decision, PlanDiff, ReceivedPlan, SiteOperator, short_hash
from gui import dialogs
from gui.access import enable, gate
from gui.models import Column, RowsModel, display
from gui.pages.base import Page, heading
from gui.text import noop, tr
from gui.widgets import HashLabel, copy_on_ctrl_c
from gui.workers import TaskRunner

_VERBS = {"approved": noop("Approve"), "rejected": noop("Reject"), "revoked": noop("Revoke")}
#: The access rule of each decision (``gui studies.<action>``).
_ACTIONS = {"approved": "approve", "rejected": "reject", "revoked": "revoke"}


def summary_html(plan: ReceivedPlan) -> str:
    """The plan's review summary as an HTML table (palette colours, no styling of its own)."""
    received = f"{display(plan.received_at)} ({plan.source})"
    lines = [(tr("status"), plan.status), (tr("received"), received), *plan.summary.lines()]
    rows = "".join(f"<tr><th align='left' valign='top'>{html.escape(label)}</th>"
                   f"<td>{html.escape(value)}</td></tr>" for label, value in lines)
    return f"<table cellspacing='4'>{rows}</table>"


class StudiesPage(Page):
    title = noop("Studies")
    key = "studies"
    icon = "SP_FileDialogContentsView"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.model = RowsModel([
            Column(tr("received"), lambda p: p.received_at),
            Column(tr("study"), lambda p: p.study),
            Column(tr("plan hash"), lambda p: short_hash(p.plan_hash),
                   tooltip=lambda p: p.plan_hash),
            Column(tr("status"), lambda p: p.status),
            Column(tr("source"), lambda p: p.source),
        ], self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAccessibleName(tr("Received study plans"))
        self.table.selectionModel().selectionChanged.connect(self._selected)
        copy_on_ctrl_c(self.table, lambda p: p.plan_hash)
        self.hash_label = HashLabel(tr("plan hash"))
        self.summary = QTextBrowser()
        self.summary.setAccessibleName(tr("Plan summary"))
        self.diff = QPlainTextEdit()
        self.diff.setReadOnly(True)
        self.diff.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.diff.setAccessibleName(tr("Changes against the previous plan"))
        self.diffs = TaskRunner(self)
        self.pending_select: str | None = None
        self.tabs = QTabWidget()
        self.tabs.addTab(self.summary, tr("&Summary"))
        self.tabs.addTab(self.diff, tr("&Changes"))

        self.import_button = QPushButton(tr("&Import plan..."))
        gate(self.import_button, operator, "gui studies.receive",
             tooltip=tr("Add a study plan file (TOML) to this site's inbox"))
        self.import_button.clicked.connect(self._import)
        self.buttons: dict[str, QPushButton] = {}
        labels = {"approved": tr("&Approve"), "rejected": tr("&Reject"),
                  "revoked": tr("Re&voke")}
        for decision, label in labels.items():
            button = QPushButton(label)
            gate(button, operator, f"gui studies.{_ACTIONS[decision]}",
                 tooltip=tr("{verb} the selected plan hash").format(verb=tr(_VERBS[decision])))
            button.clicked.connect(lambda _=False, d=decision: self.decide(d))
            self.buttons[decision] = button
        self.approve_button = self.buttons["approved"]
        self.reject_button = self.buttons["rejected"]
        self.revoke_button = self.buttons["revoked"]
        self.report_button = QPushButton(tr("Participation re&port..."))
        gate(self.report_button, operator, "gui studies.report",
             tooltip=tr("Write what this site contributed to the selected study (PDF or "
                        "HTML) for the ethics board or the data-protection officer"))
        self.report_button.clicked.connect(self.report)
        self.report_path: Path | None = None
        self.runner.busy_changed.connect(lambda _b: self._update_buttons())

        bar = QHBoxLayout()
        bar.addWidget(self.import_button)
        bar.addWidget(self.report_button)
        bar.addStretch(1)
        for button in self.buttons.values():
            bar.addWidget(button)
        split = QSplitter()
        split.addWidget(self.table)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 4)
        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Studies")))
        layout.addLayout(bar)
        hash_row = QHBoxLayout()
        hash_row.addWidget(QLabel(tr("Selected plan hash:")))
        hash_row.addWidget(self.hash_label, 1)
        layout.addLayout(hash_row)
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

    def select_target(self, target: str) -> None:
        """Select the plan with hash ``target`` when the page shows its next load."""
        self.pending_select = target

    def fetch(self) -> list[ReceivedPlan]:
        return self.operator.received_plans()

    def show_data(self, data: list[ReceivedPlan]) -> None:
        previous = self.selected()
        self.model.set_rows(data)
        wanted = self.pending_select or (previous.plan_hash if previous is not None else None)
        self.pending_select = None
        if wanted is not None and self.select_hash(wanted):
            return
        if self.model.rowCount() and self.selected() is None:
            self.table.selectRow(0)
        self._selected()

    def _selected(self) -> None:
        plan = self.selected()
        self._update_buttons()
        self.hash_label.set_value(plan.plan_hash if plan is not None else None)
        if plan is None:
            self.summary.setHtml(tr("<p>No study plan received yet. Import one with "
                                 "<i>Import plan...</i>.</p>"))
            self.diff.setPlainText("")
            return
        self.summary.setHtml(summary_html(plan))
        self.diff.setPlainText(tr("Comparing with the previous plan..."))
        if not self.diffs.busy:
            self.diffs.start("diff", lambda _w: self.operator.plan_diff(plan.plan_hash),
                             on_done=self._show_diff, on_error=self._diff_failed)

    def _diff_failed(self, _code: str, message: str) -> None:
        self.diff.setPlainText(message)  # shown in place: the summary is still useful

    def _show_diff(self, diff: PlanDiff) -> None:
        plan = self.selected()
        if plan is None or plan.plan_hash != diff.plan_hash:
            self._selected()  # the selection moved on meanwhile
            return
        if diff.previous_hash is None:
            self.diff.setPlainText(tr("This is the first plan of this study received here: "
                                   "nothing to compare."))
        else:
            changes = "\n".join(f"{c.path}: {c.old} -> {c.new}" for c in diff.changes)
            self.diff.setPlainText(tr("Changes against {previous}:\n{changes}\n\n{unified}").format(
                previous=short_hash(diff.previous_hash), changes=changes or tr("(none)"),
                unified=diff.unified))

    def _update_buttons(self) -> None:
        plan = self.selected()
        status = plan.status if plan is not None else None
        enable(self.approve_button, status is not None and status != "approved")
        enable(self.reject_button, status in ("pending",))
        enable(self.revoke_button, status == "approved")
        enable(self.report_button, plan is not None and not self.runner.busy)

    def decide(self, decision: Decision) -> None:
        """Ask for confirmation, then record the decision about the selected plan."""
        plan = self.selected()
        if plan is None:
            return
        verb = tr(_VERBS[decision])
        consequence = {
            "approved": tr("The site agent will then take part in this study's rounds, and "
                        "spend privacy budget on them."),
            "rejected": tr("The site agent will refuse this plan."),
            "revoked": tr("The site agent will refuse further rounds of this plan."),
        }[decision]
        if not dialogs.confirm(self, tr("{verb} study").format(verb=verb),
                               tr("{verb} study '{study}' with plan hash\n{plan_hash}?\n\n"
                                  "{consequence}").format(verb=verb, study=plan.study,
                                                          plan_hash=plan.plan_hash,
                                                          consequence=consequence)):
            return
        self.act("decide", lambda: self.operator.decide(plan.plan_hash, decision),
                 announce=tr("study {study} {plan_hash} {decision}").format(
                     study=plan.study, plan_hash=short_hash(plan.plan_hash), decision=decision))

    def _import(self) -> None:
        path = dialogs.open_file(self, tr("Import a study plan"), tr("Study plans (*.toml)"))
        if path is None:
            return
        def received(plan: ReceivedPlan) -> None:
            self.pending_select = plan.plan_hash
            self.changed.emit(tr("study plan {plan_hash} received").format(
                plan_hash=short_hash(plan.plan_hash)))

        self.act("import", lambda: self.operator.receive_plan(path), done=received)

    def report(self) -> None:
        """Write the selected study's participation report where the operator chooses."""
        plan = self.selected()
        if plan is None:
            return
        path = dialogs.save_file(self, tr("Save the participation report"),
                                 tr("PDF document (*.pdf);;Web page (*.html)"),
                                 tr("{study}-participation-report.pdf").format(study=plan.study))
        if path is None:
            return
        if path.suffix.lower() not in (".pdf", ".html"):
            path = path.with_suffix(".pdf")

        def written(out: Path) -> None:
            self.report_path = out
            dialogs.show_info(self, tr("Participation report written to {path}").format(
                path=out), title=tr(self.title))

        self.act("report", lambda: self.operator.write_report(plan.plan_hash, path),
                 done=written, announce=tr("participation report written"))

"""Consent page: the consent history, withdrawing or re-granting a patient, importing opt-outs.

Patient ids are shown to the operator (they are decrypted in memory for this view) and
never logged or put into error messages.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import (
    GLOBAL_SCOPE,
    ConsentEvent,
    ImportResult,
    SiteOperator,
    short_hash,
)
from gui import dialogs
from gui.access import enable, gate
from gui.models import PAGE_SIZE, Column, RowsModel
from gui.pages.base import Page, heading
from gui.text import noop, tr
from gui.widgets import paged

ALL_STUDIES = noop("all studies")


def scope_text(scope: str) -> str:
    return tr(ALL_STUDIES) if scope == GLOBAL_SCOPE else scope


class ConsentPage(Page):
    title = noop("Consent")
    key = "consent"
    icon = "SP_DialogYesButton"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.patient_edit = QLineEdit()
        self.patient_edit.setPlaceholderText(tr("patient id"))
        self.patient_edit.setAccessibleName(tr("Patient id"))
        self.patient_edit.textChanged.connect(self._update_buttons)
        patient_label = QLabel(tr("&Patient id:"))
        patient_label.setBuddy(self.patient_edit)
        self.scope_combo = QComboBox()
        self.scope_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.scope_combo.setAccessibleName(tr("Scope"))
        scope_label = QLabel(tr("&Scope:"))
        scope_label.setBuddy(self.scope_combo)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText(tr("reason (no patient data)"))
        self.note_edit.setAccessibleName(tr("Note"))
        note_label = QLabel(tr("&Note:"))
        note_label.setBuddy(self.note_edit)
        self.withdraw_button = QPushButton(tr("&Withdraw consent"))
        gate(self.withdraw_button, operator, "gui consent.withdraw",
             tooltip=tr("Exclude this patient from training and evaluation in the scope"))
        self.withdraw_button.clicked.connect(lambda: self.change("withdraw"))
        self.grant_button = QPushButton(tr("&Grant consent"))
        gate(self.grant_button, operator, "gui consent.grant",
             tooltip=tr("Include this patient again in the scope"))
        self.grant_button.clicked.connect(lambda: self.change("grant"))
        self.import_button = QPushButton(tr("&Import opt-out list..."))
        gate(self.import_button, operator, "gui consent.import",
             tooltip=tr("Withdraw every patient in a file (CSV with patient_id, or one id a line)"))
        self.import_button.clicked.connect(self.import_file)
        self.runner.busy_changed.connect(lambda _b: self._update_buttons())

        form_box = QGroupBox(tr("Change consent"))
        form = QGridLayout(form_box)
        form.addWidget(patient_label, 0, 0)
        form.addWidget(self.patient_edit, 0, 1)
        form.addWidget(scope_label, 0, 2)
        form.addWidget(self.scope_combo, 0, 3)
        form.addWidget(note_label, 1, 0)
        form.addWidget(self.note_edit, 1, 1, 1, 3)
        buttons = QHBoxLayout()
        buttons.addWidget(self.withdraw_button)
        buttons.addWidget(self.grant_button)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        form.addLayout(buttons, 2, 0, 1, 4)

        self.model = RowsModel([
            Column(tr("time"), lambda e: e.at),
            Column(tr("action"), lambda e: e.action),
            Column(tr("scope"), lambda e: scope_text(e.scope)),
            Column(tr("patient id"), lambda e: e.patient_id),
            Column(tr("source"), lambda e: e.source if e.batch is None
                   else tr("{source} (batch {batch})").format(source=e.source,
                                                              batch=short_hash(e.batch)),
                   tooltip=lambda e: e.batch or ""),
            Column(tr("actor"), lambda e: e.actor),
            Column(tr("note"), lambda e: e.note),
        ], self, page_size=PAGE_SIZE)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setAccessibleName(tr("Consent history"))
        self.summary = QLabel()

        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Consent")))
        layout.addWidget(form_box)
        layout.addWidget(self.summary)
        table_box, self.pager = paged(self.table, self.model, tr("consent events"))
        layout.addWidget(table_box, 1)
        self._update_buttons()

    def scope(self) -> str:
        text = self.scope_combo.currentText()
        return GLOBAL_SCOPE if text in (tr(ALL_STUDIES), "") else text

    def fetch(self) -> tuple[list[str], list[ConsentEvent]]:
        studies = sorted({p.study for p in self.operator.received_plans()})
        return studies, self.operator.consent_history()

    def show_data(self, data: tuple[list[str], list[ConsentEvent]]) -> None:
        studies, events = data
        chosen = self.scope_combo.currentText()
        self.scope_combo.clear()
        self.scope_combo.addItems([tr(ALL_STUDIES), *studies])
        self.scope_combo.setCurrentIndex(max(self.scope_combo.findText(chosen), 0))
        self.model.set_rows(events)
        withdrawals = sum(1 for e in events if e.action == "withdraw")
        self.summary.setText(tr("{events} consent event(s), {withdrawals} withdrawal(s), "
                                "newest first.").format(events=len(events),
                                                        withdrawals=withdrawals))

    def _update_buttons(self) -> None:
        has_id = bool(self.patient_edit.text().strip())
        idle = not self.runner.busy
        enable(self.withdraw_button, has_id and idle)
        enable(self.grant_button, has_id and idle)
        enable(self.import_button, idle)

    def change(self, action: str) -> None:
        """Withdraw or grant consent for the patient id in the field."""
        patient = self.patient_edit.text().strip()
        if not patient:
            return
        scope, note = self.scope(), self.note_edit.text()
        fn = self.operator.withdraw if action == "withdraw" else self.operator.grant

        def recorded(_count: object) -> None:
            self.patient_edit.clear()
            self.note_edit.clear()

        self.act(action, lambda: fn([patient], scope=scope, note=note), done=recorded,
                 announce=tr("consent: {action} recorded").format(action=action))

    def import_file(self) -> None:
        path = dialogs.open_file(self, tr("Import an opt-out list"),
                                 tr("Opt-out lists (*.csv *.txt);;All files (*)"))
        if path is None:
            return
        scope = self.scope()
        self.runner.start("import", lambda _w: self.operator.import_opt_out(path, scope=scope),
                          on_done=self._imported, on_error=self.task_failed)

    def _imported(self, result: ImportResult) -> None:
        self.refresh()
        self.changed.emit(tr("opt-out list imported: {withdrawn} withdrawn").format(
            withdrawn=result.withdrawn))
        dialogs.show_info(self, tr("Opt-out list imported (batch {batch}): {withdrawn} "
                                   "withdrawn, {unchanged} already withdrawn.").format(
                                       batch=result.batch[:8], withdrawn=result.withdrawn,
                                       unchanged=result.unchanged),
                          title=tr(self.title))

"""Privacy budget page: what each dataset spent and has left, every ledger entry explained
(round, mechanism, epsilon added, cumulative), the cumulative-epsilon chart and the ceiling.

The cumulative column comes right after the epsilon each entry added, so it is visible
without scrolling; the selected row's explanation is spelled out under the table.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import BudgetSnapshot, LedgerRow, SiteOperator
from gui import dialogs
from gui.access import gate
from gui.models import PAGE_SIZE, Column, RowsModel
from gui.pages.base import Page, heading
from gui.plots import PlotCanvas
from gui.text import noop, tr
from gui.widgets import paged

ALL = noop("All datasets")


class BudgetPage(Page):
    title = noop("Privacy budget")
    key = "budget"
    icon = "SP_DriveHDIcon"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.snapshot: BudgetSnapshot | None = None
        #: The dataset to show when the next load arrives (an attention item's).
        self.pending_select: str | None = None
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName(tr("Budget summary"))
        self.dataset_combo = QComboBox()
        self.dataset_combo.setAccessibleName(tr("Dataset"))
        self.dataset_combo.currentIndexChanged.connect(self._show)
        dataset_label = QLabel(tr("&Dataset:"))
        dataset_label.setBuddy(self.dataset_combo)
        self.model = RowsModel([
            Column(tr("round"), lambda r: r.round, numeric=True),
            Column(tr("dataset"), lambda r: r.dataset),
            Column(tr("epsilon added"), lambda r: f"+{r.added:.3f}", numeric=True,
                   tooltip=lambda r: r.explanation),
            Column(tr("cumulative"), lambda r: f"{r.cumulative:.3f}", numeric=True,
                   tooltip=lambda r: r.explanation),
            Column(tr("release"), lambda r: r.release, tooltip=lambda r: r.explanation),
            Column(tr("mechanism"), lambda r: r.mechanism, tooltip=lambda r: r.parameters),
            Column(tr("study"), lambda r: r.study, tooltip=lambda r: r.plan_hash),
            Column(tr("time"), lambda r: r.at),
            Column(tr("this release alone"), lambda r: f"{r.alone:.3f}", numeric=True),
            Column(tr("delta"), lambda r: r.delta, numeric=True),
        ], self, page_size=PAGE_SIZE)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setAccessibleName(tr("Privacy ledger"))
        self.table.selectionModel().selectionChanged.connect(self._explain)
        self.explanation = QLabel(tr("Select a row to see what it released and what it cost."))
        self.explanation.setWordWrap(True)
        self.explanation.setAccessibleName(tr("What the selected entry means"))
        self.explanation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.chart = PlotCanvas(self)

        self.ceiling_spin = QDoubleSpinBox()
        self.ceiling_spin.setRange(0.01, 1000.0)
        self.ceiling_spin.setDecimals(2)
        self.ceiling_spin.setSingleStep(0.5)
        self.ceiling_spin.setAccessibleName(tr("New privacy ceiling"))
        ceiling_label = QLabel(tr("New &ceiling (epsilon per dataset):"))
        ceiling_label.setBuddy(self.ceiling_spin)
        self.set_button = QPushButton(tr("&Set ceiling"))
        lower = gate(self.set_button, operator, "gui budget.lower_ceiling",
                     tooltip=tr("Lower the ceiling (raising it asks for confirmation)"))
        self.can_raise = operator.allowed("gui budget.raise_ceiling")
        self.ceiling_spin.setEnabled(lower or self.can_raise)
        if not lower:
            self.ceiling_spin.setToolTip(self.set_button.toolTip())
        self.set_button.clicked.connect(self.apply_ceiling)

        # What the site shares beyond encrypted sums (client_app/sharing.py).
        self.share_counts = QCheckBox(tr("Share this site's own &evaluation counts "
                                      "(leave-one-site-out checks)"))
        self.share_importance = QCheckBox(tr("Share this site's feature &importance"))
        for what, box in {"own_counts": self.share_counts,
                          "importance": self.share_importance}.items():
            gate(box, operator, "gui budget.sharing",
                 tooltip=tr("Per-site statistics sent signed, in plaintext, when a study asks"))
            box.toggled.connect(lambda checked, w=what: self.apply_sharing(w, checked))
        sharing_row = QHBoxLayout()
        sharing_row.addWidget(self.share_counts)
        sharing_row.addWidget(self.share_importance)
        sharing_row.addStretch(1)

        top = QHBoxLayout()
        top.addWidget(dataset_label)
        top.addWidget(self.dataset_combo, 1)
        top.addStretch(1)
        top.addWidget(ceiling_label)
        top.addWidget(self.ceiling_spin)
        top.addWidget(self.set_button)
        ledger = QWidget()
        ledger_layout = QVBoxLayout(ledger)
        ledger_layout.setContentsMargins(0, 0, 0, 0)
        table_box, self.pager = paged(self.table, self.model, tr("ledger entries"))
        self.model.paged.connect(self._explain)
        ledger_layout.addWidget(table_box, 1)
        ledger_layout.addWidget(self.explanation)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(ledger)
        split.addWidget(self.chart)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Privacy budget")))
        layout.addWidget(self.summary)
        layout.addLayout(top)
        layout.addLayout(sharing_row)
        layout.addWidget(split, 1)

    def select_target(self, target: str) -> None:
        """Show dataset ``target``: now if the page has data, and after the next load."""
        self.pending_select = target
        index = self.dataset_combo.findText(target)
        if index >= 0:
            self.dataset_combo.setCurrentIndex(index)

    def fetch(self) -> BudgetSnapshot:
        return self.operator.budget_snapshot()

    def show_data(self, data: BudgetSnapshot) -> None:
        self.snapshot = data
        self.ceiling_spin.setValue(data.ceiling)
        lines = [tr("Privacy ceiling: <b>epsilon {ceiling}</b> per dataset, across all "
                    "studies.").format(ceiling=f"{data.ceiling:g}"), *data.lines]
        if not data.gauges:
            lines.append(tr("No dataset has spent any budget yet."))
        self.summary.setText("<br>".join(lines))
        for box, value in ((self.share_counts, data.sharing.own_counts),
                           (self.share_importance, data.sharing.importance)):
            box.blockSignals(True)
            box.setChecked(value)
            box.blockSignals(False)
        chosen = self.pending_select or self.dataset_combo.currentText()
        self.pending_select = None
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        self.dataset_combo.addItems([tr(ALL), *(g.dataset for g in data.gauges)])
        index = self.dataset_combo.findText(chosen)
        self.dataset_combo.setCurrentIndex(max(index, 0))
        self.dataset_combo.blockSignals(False)
        self._show()

    def _show(self) -> None:
        data = self.snapshot
        if data is None:
            return
        name = self.dataset_combo.currentText()
        rows = [r for r in data.rows if name in (tr(ALL), r.dataset)]
        self.model.set_rows(rows, page=-1)  # the newest entries, where the total is
        curves = [(d, c) for d, c in data.curves if name in (tr(ALL), d)]
        if any(c for _, c in curves):
            self.chart.plot_budget(curves, ceiling=data.ceiling)
        else:
            self.chart.show_message(tr("No privacy budget spent yet"))
        if rows:
            self.table.selectRow(self.model.rowCount() - 1)
        self._explain()

    def selected(self) -> LedgerRow | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.row(rows[0].row()) if rows else None

    def _explain(self) -> None:
        row = self.selected()
        self.explanation.setText(row.explanation if row is not None else tr(
            "Select a row to see what it released and what it cost."))

    def apply_ceiling(self) -> None:
        """Set the ceiling from the spin box; raising it needs a confirmation."""
        value = round(self.ceiling_spin.value(), 2)
        current = self.snapshot.ceiling if self.snapshot is not None else value
        if value == current:
            return
        raising = value > current
        if raising:
            if not self.can_raise:
                reason = self.operator.denial("gui budget.raise_ceiling")
                self.show_error(tr("Raising the ceiling {reason}").format(reason=reason))
                return
            if not dialogs.confirm(
                    self, tr("Raise the privacy ceiling"),
                    tr("Raise the privacy ceiling from {old} to {new}?\n\nEvery dataset may "
                       "then spend more epsilon: less privacy for its patients.").format(
                        old=f"{current:g}", new=f"{value:g}")):
                self.ceiling_spin.setValue(current)
                return
        self.act("ceiling", lambda: self.operator.set_ceiling(value, confirm_raise=raising),
                 announce=tr("privacy ceiling set to {value}").format(value=f"{value:g}"))

    def apply_sharing(self, what: str, allowed: bool) -> None:
        """Record the operator's sharing choice; on refusal the box shows the stored state."""
        words = what.replace("_", " ")
        self.act("sharing", lambda: self.operator.set_sharing(what, allowed),
                 announce=(tr("{what} shared") if allowed else tr("{what} not shared")).format(
                     what=words))

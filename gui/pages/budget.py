"""Privacy budget page: each dataset's ledger (every release with its mechanism), the site's
delta, the cumulative-epsilon chart and the ceiling."""

from __future__ import annotations

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

from client_app.facade import DatasetBudget, SiteOperator
from gui import dialogs
from gui.access import gate
from gui.models import Column, RowsModel
from gui.pages.base import Page, heading
from gui.plots import PlotCanvas

ALL = "All datasets"


class BudgetPage(Page):
    title = "Privacy budget"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.budgets: list[DatasetBudget] = []
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName("Budget summary")
        self.dataset_combo = QComboBox()
        self.dataset_combo.setAccessibleName("Dataset")
        self.dataset_combo.currentIndexChanged.connect(self._show)
        dataset_label = QLabel("&Dataset:")
        dataset_label.setBuddy(self.dataset_combo)
        self.model = RowsModel([
            Column("time", lambda e: e.at),
            Column("dataset", lambda e: e.dataset_id),
            Column("study", lambda e: e.study, tooltip=lambda e: e.plan_hash),
            Column("round", lambda e: e.round, numeric=True),
            Column("release", lambda e: e.kind),
            Column("mechanism", lambda e: e.mechanism_name),
            Column("parameters", lambda e: e.parameters_text()),
            Column("delta", lambda e: e.delta, numeric=True),
            Column("epsilon", lambda e: e.epsilon, numeric=True),
            Column("cumulative", lambda e: e.epsilon_cumulative, numeric=True),
        ], self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setAccessibleName("Privacy ledger")
        self.chart = PlotCanvas(self)

        self.ceiling_spin = QDoubleSpinBox()
        self.ceiling_spin.setRange(0.01, 1000.0)
        self.ceiling_spin.setDecimals(2)
        self.ceiling_spin.setSingleStep(0.5)
        self.ceiling_spin.setAccessibleName("New privacy ceiling")
        ceiling_label = QLabel("New &ceiling (epsilon per dataset):")
        ceiling_label.setBuddy(self.ceiling_spin)
        self.set_button = QPushButton("&Set ceiling")
        lower = gate(self.set_button, operator, "gui budget.lower_ceiling",
                     tooltip="Lower the ceiling (raising it asks for confirmation)")
        self.can_raise = operator.allowed("gui budget.raise_ceiling")
        self.ceiling_spin.setEnabled(lower or self.can_raise)
        if not lower:
            self.ceiling_spin.setToolTip(self.set_button.toolTip())
        self.set_button.clicked.connect(self.apply_ceiling)

        # What the site shares beyond encrypted sums (client_app/sharing.py).
        self.share_counts = QCheckBox("Share this site's own &evaluation counts "
                                      "(leave-one-site-out checks)")
        self.share_importance = QCheckBox("Share this site's feature &importance")
        for box, what in ((self.share_counts, "own_counts"),
                          (self.share_importance, "importance")):
            gate(box, operator, "gui budget.sharing",
                 tooltip="Per-site statistics sent signed, in plaintext, when a study asks")
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
        split = QSplitter()
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([660, 460])
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Privacy budget"))
        layout.addWidget(self.summary)
        layout.addLayout(top)
        layout.addLayout(sharing_row)
        layout.addWidget(split, 1)

    def load(self) -> None:
        self.budgets = self.operator.budgets()
        ceiling = self.operator.ceiling()
        self.ceiling_spin.setValue(ceiling)
        lines = [f"Privacy ceiling: <b>epsilon {ceiling:g}</b> per dataset, across all studies."]
        for b in self.budgets:
            delta = "unknown" if b.delta is None else f"{b.delta.value:.3g}"
            lines.append(f"{b.dataset}: spent {b.spent:.3f} at delta {delta}, remaining "
                         f"{b.remaining:.3f} ({b.fraction_spent:.0%} of the ceiling) in "
                         f"{len(b.entries)} release(s)")
        if not self.budgets:
            lines.append("No dataset has spent any budget yet.")
        self.summary.setText("<br>".join(lines))
        shared = self.operator.sharing()
        for box, value in ((self.share_counts, shared.own_counts),
                           (self.share_importance, shared.importance)):
            box.blockSignals(True)
            box.setChecked(value)
            box.blockSignals(False)
        chosen = self.dataset_combo.currentText()
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        self.dataset_combo.addItems([ALL, *(b.dataset for b in self.budgets)])
        index = self.dataset_combo.findText(chosen)
        self.dataset_combo.setCurrentIndex(max(index, 0))
        self.dataset_combo.blockSignals(False)
        self._show()

    def _show(self) -> None:
        name = self.dataset_combo.currentText()
        shown = [b for b in self.budgets if name in (ALL, b.dataset)]
        self.model.set_rows([e for b in shown for e in b.entries])
        ceiling = self.operator.ceiling()
        if any(b.curve for b in shown):
            self.chart.plot_budget([(b.dataset, b.curve) for b in shown], ceiling=ceiling)
        else:
            self.chart.show_message("No privacy budget spent yet")

    def apply_ceiling(self) -> None:
        """Set the ceiling from the spin box; raising it needs a confirmation."""
        value = round(self.ceiling_spin.value(), 2)
        current = self.operator.ceiling()
        if value == current:
            return
        raising = value > current
        if raising:
            if not self.can_raise:
                reason = self.operator.denial("gui budget.raise_ceiling")
                self.show_error(f"Raising the ceiling {reason}")
                return
            if not dialogs.confirm(
                    self, "Raise the privacy ceiling",
                    f"Raise the privacy ceiling from {current:g} to {value:g}?\n\nEvery "
                    "dataset may then spend more epsilon: less privacy for its patients."):
                self.ceiling_spin.setValue(current)
                return
        if self.attempt(lambda: self.operator.set_ceiling(value, confirm_raise=raising)):
            self.refresh()
            self.changed.emit(f"privacy ceiling set to {value:g}")

    def apply_sharing(self, what: str, allowed: bool) -> None:
        """Record the operator's sharing choice; on refusal the box shows the stored state."""
        if self.attempt(lambda: self.operator.set_sharing(what, allowed)):
            self.changed.emit(f"{what.replace('_', ' ')} {'shared' if allowed else 'not shared'}")
        self.refresh()

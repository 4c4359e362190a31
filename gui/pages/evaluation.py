"""Evaluation page: run a stored global model on this site's held-out split.

The run happens in a worker with a progress bar and a Cancel button; the result shows
accuracy, AUC, the confusion matrix and the ROC curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import LabelNames, SiteOperator, short_hash
from gui.access import enable, gate
from gui.models import Column, RowsModel, display
from gui.pages.base import Page, heading
from gui.plots import PlotCanvas
from gui.text import noop, tr
from gui.workers import Worker

if TYPE_CHECKING:  # their module loads torch: imported when a model is evaluated
    from client_app.facade import LocalEvaluation, StoredModel


@dataclass(frozen=True)
class ConfusionRow:
    """One row of the confusion matrix: the actual class and the predicted counts."""

    actual: str
    predicted_positive: int
    predicted_negative: int


def confusion_rows(result: LocalEvaluation, names: LabelNames) -> list[ConfusionRow]:
    """Rows named after the plan's label: positive is the label's class (label 1)."""
    return [ConfusionRow(tr("actually {positive} (1)").format(positive=names.positive),
                         result.tp, result.fn),
            ConfusionRow(tr("actually {negative} (0)").format(negative=names.negative),
                         result.fp, result.tn)]


@dataclass(frozen=True)
class Evaluated:
    """An evaluation and what its plan's label means."""

    result: LocalEvaluation
    names: LabelNames


def model_text(model: StoredModel) -> str:
    return tr("{study}, round {round} ({at}) - {name}").format(
        study=model.study, round=model.round, at=display(model.at), name=model.name)


class EvaluationPage(Page):
    title = noop("Evaluation")
    key = "evaluation"
    icon = "SP_DialogApplyButton"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.result: LocalEvaluation | None = None
        self.names: LabelNames | None = None
        self.models: list[StoredModel] = []
        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName(tr("Model"))
        model_label = QLabel(tr("&Model:"))
        model_label.setBuddy(self.model_combo)
        self.run_button = QPushButton(tr("&Run evaluation"))
        gate(self.run_button, operator, "gui evaluation.run",
             tooltip=tr("Evaluate the model on this site's held-out split (withdrawn patients "
                     "excluded)"))
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton(tr("&Cancel"))
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setAccessibleName(tr("Evaluation progress"))
        self.runner.progress.connect(lambda f: self.progress.setValue(round(f * 100)))
        self.runner.busy_changed.connect(self._busy)
        self.state = QLabel("")

        self.metrics: dict[str, QLabel] = {}
        metrics_box = QGroupBox(tr("Result"))
        metrics_layout = QVBoxLayout(metrics_box)
        metrics_form = QFormLayout()
        metrics_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        metrics_layout.addLayout(metrics_form)
        titles = {"accuracy": tr("Accuracy"), "auc": tr("AUC"), "n": tr("Test examples"),
                  "excluded": tr("Left out by consent (train and test rows)"),
                  "threshold": tr("Threshold"), "dataset": tr("Dataset version"),
                  "plan": tr("Plan hash")}
        for key, title in titles.items():
            self.metrics[key] = QLabel("-")
            self.metrics[key].setTextInteractionFlags(
                Qt.TextInteractionFlag.TextSelectableByMouse)
            metrics_form.addRow(tr("{title}:").format(title=title), self.metrics[key])
        for headline in (self.metrics["accuracy"], self.metrics["auc"]):
            font = headline.font()
            font.setBold(True)
            font.setPointSizeF(font.pointSizeF() * 1.4)
            headline.setFont(font)
        self.confusion = RowsModel([
            Column("", lambda r: r.actual),
            Column(tr("predicted positive"), lambda r: r.predicted_positive, numeric=True),
            Column(tr("predicted negative"), lambda r: r.predicted_negative, numeric=True),
        ], self)
        self.confusion_table = QTableView()
        self.confusion_table.setModel(self.confusion)
        self.confusion_table.verticalHeader().hide()
        self.confusion_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.Stretch)
        self.confusion_table.setMaximumHeight(140)
        self.confusion_table.setAccessibleName(tr("Confusion matrix"))
        self.confusion_label = QLabel(tr("Confusion matrix:"))
        metrics_layout.addWidget(self.confusion_label)
        metrics_layout.addWidget(self.confusion_table)
        metrics_layout.addStretch(1)
        self.roc = PlotCanvas(self, width=4.5, height=4.0)

        bar = QHBoxLayout()
        bar.addWidget(model_label)
        bar.addWidget(self.model_combo, 1)
        bar.addWidget(self.run_button)
        bar.addWidget(self.cancel_button)
        progress = QHBoxLayout()
        progress.addWidget(self.progress, 1)
        progress.addWidget(self.state)
        results = QHBoxLayout()
        results.addWidget(metrics_box, 2)
        results.addWidget(self.roc, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Local evaluation")))
        layout.addLayout(bar)
        layout.addLayout(progress)
        layout.addLayout(results, 1)
        self.roc.show_message(tr("Run an evaluation to see the ROC curve"))

    def fetch(self) -> list[StoredModel]:
        return self.operator.stored_models()

    def show_data(self, data: list[StoredModel]) -> None:
        chosen = self.model_combo.currentData()
        self.models = data
        self.model_combo.clear()
        for model in self.models:
            self.model_combo.addItem(model_text(model), model.name)
        if not self.models:
            self.model_combo.addItem(tr("no global model stored yet"), None)
        index = self.model_combo.findData(chosen)
        self.model_combo.setCurrentIndex(max(index, 0))
        self._busy(self.runner.busy)

    def _busy(self, busy: bool) -> None:
        enable(self.run_button, not busy and bool(self.models))
        self.cancel_button.setEnabled(busy)
        self.model_combo.setEnabled(not busy)

    def run(self) -> None:
        """Evaluate the chosen model in the background."""
        name = self.model_combo.currentData()
        self.progress.setValue(0)
        self.state.setText(tr("running..."))

        def task(worker: Worker) -> Evaluated:
            result = self.operator.evaluate(model=name, progress=worker.report,
                                            cancelled=worker.cancelled)
            return Evaluated(result, self.operator.label_names(result.plan_hash))

        self.runner.start("evaluate", task, on_done=self.show_result,
                          on_error=self._failed)

    def _failed(self, code: str, message: str) -> None:
        self.state.setText(tr("cancelled") if code == "cancelled" else tr("failed"))
        self.progress.setValue(0)
        self.task_failed(code, message)

    def show_result(self, evaluated: Evaluated) -> None:
        result, names = evaluated.result, evaluated.names
        self.result, self.names = result, names
        self.state.setText(tr("done"))
        self.progress.setValue(100)
        self.metrics["accuracy"].setText(f"{result.accuracy:.3f}")
        self.metrics["auc"].setText(f"{result.auc:.3f}")
        self.metrics["n"].setText(str(result.n))
        self.metrics["excluded"].setText(str(result.excluded_by_consent))
        self.metrics["threshold"].setText(f"{result.threshold:g}")
        self.metrics["dataset"].setText(short_hash(result.dataset_version))
        self.metrics["dataset"].setToolTip(result.dataset_version)
        self.metrics["plan"].setText(short_hash(result.plan_hash))
        self.metrics["plan"].setToolTip(result.plan_hash)
        self.confusion_label.setText(tr(
            "Confusion matrix. Positive means {positive} (label 1: {meaning}); a score of at "
            "least {threshold} predicts positive.").format(
                positive=names.positive, meaning=names.description,
                threshold=f"{result.threshold:g}"))
        self.confusion_label.setWordWrap(True)
        self.confusion.set_rows(confusion_rows(result, names))
        # Two header lines, so that long label names fit their column instead of being cut.
        self.confusion.set_title(1, tr("predicted\n{name}").format(name=names.positive))
        self.confusion.set_title(2, tr("predicted\n{name}").format(name=names.negative))
        self.roc.plot_roc(result.roc_fpr, result.roc_tpr, auc=result.auc)

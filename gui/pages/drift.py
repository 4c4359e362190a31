"""Drift page: has this site's newest data moved away from the data a kept model trained on?

The comparison runs in a worker (facade ``drift_report``: the site's rows never leave it) and
is shown in plain words: one sentence for the whole picture, then one line per feature,
named as the study's data dictionary describes it, largest shift first. The operator also
decides here whether the site answers the coordinator's drift requests (noisy histograms,
counted in the privacy budget, only for studies that declare them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from client_app import facade
from client_app.facade import SiteOperator
from common.errors import TesseraError
from gui.access import gate
from gui.models import Column, RowsModel
from gui.pages.base import Page, heading
from gui.text import noop, tr


@dataclass(frozen=True)
class FeatureLine:
    """One feature's shift, in words and numbers."""

    name: str
    label: str
    psi: float
    ks: float
    reading: str


@dataclass(frozen=True)
class DriftView:
    """What the page shows: the kept models, the report of the chosen one, sharing."""

    models: tuple[tuple[str, str], ...]
    report: dict[str, Any] | None
    features: tuple[FeatureLine, ...]
    shared: bool


def reading(psi: float, report: dict[str, Any]) -> str:
    """A PSI in words, with the report's own levels."""
    if psi > float(report["major_psi"]):
        return tr("major shift")
    if psi > float(report["moderate_psi"]):
        return tr("moderate shift")
    return tr("stable")


def feature_label(plan: Any, name: str) -> str:
    """The data dictionary's description of a feature (and its unit), else its name."""
    column = (plan.dataset.columns or {}).get(name) if plan is not None else None
    if column is None or not column.description:
        return name
    unit = f" ({column.unit})" if column.unit else ""
    return f"{column.description}{unit}"


def summary_text(report: dict[str, Any]) -> str:
    """The whole picture in one or two sentences."""
    level = {"stable": tr("has not moved noticeably"),
             "moderate": tr("has moved moderately"),
             "major": tr("has moved a lot")}[str(report["level"])]
    text = tr("Your newest data ({current} rows) compared with the data the model of study "
              "{study} was trained on ({reference} rows): it {level}.").format(
        current=report["current_rows"], reference=report["reference_rows"],
        study=report["study"], level=level)
    if report["same_version"]:
        text += " " + tr("No newer dataset version has been registered since the model was "
                         "kept, so both are the same data.")
    text += " " + tr("The model's scores: {before:.0%} on average before, {after:.0%} "
                     "now.").format(before=float(report["mean_score_reference"]),
                                    after=float(report["mean_score_current"]))
    return text


class DriftPage(Page):
    title = noop("Drift")
    key = "drift"
    icon = "SP_BrowserReload"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.view: DriftView | None = None
        self._chosen: str | None = None
        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName(tr("Model"))
        self.model_combo.activated.connect(self._choose)
        model_label = QLabel(tr("&Model:"))
        model_label.setBuddy(self.model_combo)
        self.summary = QLabel(tr("Looking for a kept model..."))
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName(tr("Drift summary"))
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model = RowsModel([
            Column(tr("feature"), lambda r: r.name),
            Column(tr("reading"), lambda r: r.reading),
            Column(tr("PSI"), lambda r: f"{r.psi:.3f}", numeric=True,
                   tooltip=lambda _r: tr("population stability index: 0 is no change")),
            Column(tr("KS"), lambda r: f"{r.ks:.3f}", numeric=True,
                   tooltip=lambda _r: tr("largest gap between the two distributions (0-1)")),
            Column(tr("what it measures (data dictionary)"), lambda r: r.label,
                   tooltip=lambda r: r.label),
        ], self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.setAccessibleName(tr("Shift per feature"))
        self.share = QCheckBox(tr("Answer the coordinator's &drift requests (noisy counts, "
                                  "counted in the privacy budget; only for studies that ask)"))
        gate(self.share, operator, "gui drift.sharing",
             tooltip=tr("Off: the coordinator's drift requests are refused"))
        self.share.toggled.connect(self.apply_sharing)
        top = QHBoxLayout()
        top.addWidget(model_label)
        top.addWidget(self.model_combo, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Drift")))
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.share)

    def fetch(self) -> DriftView:
        models = tuple((m.name, tr("{study}, round {round} - {name}").format(
                           study=m.study, round=m.round, name=m.name))
                       for m in self.operator.stored_models())
        shared = facade.drift_sharing(self.operator)
        chosen = self._chosen if self._chosen in {n for n, _ in models} else None
        if not models:
            return DriftView(models=(), report=None, features=(), shared=shared)
        report: dict[str, Any] = facade.drift_report(self.operator, model=chosen)
        features: list[dict[str, Any]] = list(report["features"])
        try:
            plan = self.operator.plan(str(report["plan_hash"]))
        except TesseraError:  # the plan text was not kept: feature names only
            plan = None
        lines = sorted((FeatureLine(name=str(f["feature"]),
                                    label=feature_label(plan, str(f["feature"])),
                                    psi=float(f["psi"]), ks=float(f["ks"]),
                                    reading=reading(float(f["psi"]), report))
                        for f in features), key=lambda line: -line.psi)
        return DriftView(models=models, report=report, features=tuple(lines), shared=shared)

    def show_data(self, data: DriftView) -> None:
        self.view = data
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for name, text in data.models:
            self.model_combo.addItem(text, name)
        if data.report is not None:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(
                data.report["model"])))
        self.model_combo.blockSignals(False)
        self.share.blockSignals(True)
        self.share.setChecked(data.shared)
        self.share.blockSignals(False)
        self.model.set_rows(list(data.features))
        if data.report is None:
            self.summary.setText(tr("This site has not kept a study's final model yet. Drift "
                                    "is measured against the data a kept model trained on: "
                                    "take part in a study to the end, then come back."))
            return
        self.summary.setText(summary_text(data.report))

    def _choose(self, index: int) -> None:
        self._chosen = self.model_combo.itemData(index)
        self.refresh()

    def apply_sharing(self, allowed: bool) -> None:
        """Record the operator's choice; on refusal the box shows the stored state."""
        self.act("drift sharing", lambda: facade.drift_sharing(self.operator, allowed),
                 announce=tr("drift statistics {state} with the coordinator").format(
                     state=tr("shared") if allowed else tr("not shared")))

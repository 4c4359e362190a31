"""Datasets page: registered versions with lineage and validation, and registering a file.

Registering: choose the study plan whose schema the file must follow, pick the file; a worker
validates it and the report appears with one choice per kind of issue found (drop, impute,
clip...). Register stores the cleaned content as a new version; a file with blocking
issues cannot be registered.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import (
    POLICY_CHOICES,
    DatasetVersion,
    LabelNames,
    Policy,
    ReceivedPlan,
    SiteOperator,
    ValidationReport,
    short_hash,
)
from gui import dialogs
from gui.access import enable, gate
from gui.models import PAGE_SIZE, Column, RowsModel
from gui.pages.base import Page, heading
from gui.text import noop, tr
from gui.widgets import copy_on_ctrl_c, paged

DATA_FILES = noop("Data files (*.csv *.parquet);;All files (*)")


def issues_text(report: dict[str, object]) -> str:
    """A version's validation summary in one line (counts only)."""
    issues = report.get("issues")
    if isinstance(issues, dict):
        parts = [f"{kind} {count}" for kind, count in sorted(issues.items()) if count]
        return ", ".join(parts) or tr("no issues")
    if isinstance(issues, list):
        kinds: dict[str, int] = {}
        for item in issues:
            if isinstance(item, dict):
                kind = str(item.get("kind", "issue"))
                count = item.get("count", 1)
                kinds[kind] = kinds.get(kind, 0) + (count if isinstance(count, int) else 1)
        return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or tr("no issues")
    return tr("no issues") if not issues else str(issues)


def summary_lines(report: dict[str, object], names: LabelNames | None = None) -> list[str]:
    """A version's stored validation summary as readable lines (counts, never values); the
    label's classes are named from the plan's data dictionary when ``names`` is given."""
    lines: list[str] = []
    applied = report.get("applied")
    if isinstance(applied, dict):
        lines.append(tr("cleaning: ") + ", ".join(f"{k.replace('_', ' ')} {v}"
                                              for k, v in sorted(applied.items())))
    lines.append(tr("issues: {report}").format(report=issues_text(report)))
    issue_list = report.get("issue_list")
    for item in issue_list if isinstance(issue_list, list) else []:
        if isinstance(item, dict):
            column = item.get("column")
            where = tr(" in {column}").format(column=column) if column else ""
            blocking = tr(" (blocking)") if item.get("blocking") else ""
            lines.append(f"  {item.get('kind')}{where}: {item.get('count')}{blocking}")
    labels = report.get("label_counts")
    if isinstance(labels, dict) and labels:
        lines.append(tr("labels: ") + ", ".join(
            f"{_label_word(str(k), names)}: {v}" for k, v in sorted(labels.items())))
    return lines


def _label_word(value: str, names: LabelNames | None) -> str:
    """``benign (1)`` for a label value, or the bare value without a data dictionary."""
    if names is None or value not in ("0", "1"):
        return value
    word = names.positive if value == "1" else names.negative
    return f"{word} ({value})"


def policy_text(policy: dict[str, object]) -> str:
    """The non-default policy choices of a version (``missing=drop``...)."""
    defaults = Policy().to_json()
    chosen = [f"{k}={v}" for k, v in sorted(policy.items()) if defaults.get(k) != v]
    return ", ".join(chosen) or tr("defaults")


class DatasetsPage(Page):
    title = noop("Datasets")
    key = "datasets"
    icon = "SP_DirIcon"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.report: ValidationReport | None = None
        self.path: Path | None = None
        self.registered: DatasetVersion | None = None
        self.policy_combos: dict[str, QComboBox] = {}
        #: What the label's classes mean, per plan hash of the versions shown.
        self.label_names: dict[str, LabelNames] = {}

        self.model = RowsModel([
            Column(tr("registered"), lambda v: v.at),
            Column(tr("dataset"), lambda v: v.dataset),
            Column(tr("version"), lambda v: short_hash(v.version), tooltip=lambda v: v.version),
            Column(tr("parent"), lambda v: short_hash(v.parent_version) if v.parent_version
                   else tr("first version"),
                   tooltip=lambda v: v.parent_version or tr("first version")),
            Column(tr("rows"), lambda v: v.rows, numeric=True),
            Column(tr("source"), lambda v: f"{v.source_name} ({v.source_format})",
                   tooltip=lambda v: v.source_hash),
            Column(tr("validation"), lambda v: issues_text(v.report)),
            Column(tr("policy"), lambda v: policy_text(v.policy)),
            Column(tr("by"), lambda v: v.actor),
        ], self, page_size=PAGE_SIZE)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setAccessibleName(tr("Dataset versions"))
        self.table.selectionModel().selectionChanged.connect(self._selected)
        copy_on_ctrl_c(self.table, lambda v: v.version)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setAccessibleName(tr("Validation summary of the selected version"))

        self.plan_combo = QComboBox()
        self.plan_combo.setAccessibleName(tr("Study plan"))
        self.plan_combo.currentIndexChanged.connect(lambda _i: self._update_buttons())
        plan_label = QLabel(tr("Study &plan (schema):"))
        plan_label.setBuddy(self.plan_combo)
        self.choose_button = QPushButton(tr("Register &file..."))
        gate(self.choose_button, operator, "gui datasets.register",
             tooltip=tr("Validate a CSV or Parquet file against the plan's schema"))
        self.choose_button.clicked.connect(self.choose_file)
        self.check_state = QLabel("")

        self.report_box = QGroupBox(tr("Validation report"))
        self.report_text = QPlainTextEdit()
        self.report_text.setReadOnly(True)
        self.report_text.setAccessibleName(tr("Validation report"))
        self.policy_form = QFormLayout()
        self.register_button = QPushButton(tr("Re&gister"))
        gate(self.register_button, operator, "gui datasets.register",
             tooltip=tr("Store the cleaned file as a new dataset version"))
        self.register_button.clicked.connect(self.register)
        self.discard_button = QPushButton(tr("&Discard"))
        self.discard_button.clicked.connect(self.discard)
        report_buttons = QHBoxLayout()
        report_buttons.addStretch(1)
        report_buttons.addWidget(self.discard_button)
        report_buttons.addWidget(self.register_button)
        box = QVBoxLayout(self.report_box)
        box.addWidget(self.report_text, 1)
        box.addLayout(self.policy_form)
        box.addLayout(report_buttons)
        self.report_box.setVisible(False)
        self.runner.busy_changed.connect(lambda _b: self._update_buttons())

        bar = QHBoxLayout()
        bar.addWidget(plan_label)
        bar.addWidget(self.plan_combo, 1)
        bar.addWidget(self.choose_button)
        bar.addWidget(self.check_state)
        split = QSplitter()
        table_box, self.pager = paged(self.table, self.model, tr("dataset versions"))
        split.addWidget(table_box)
        split.addWidget(self.details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Datasets")))
        layout.addWidget(split, 2)
        layout.addLayout(bar)
        layout.addWidget(self.report_box, 2)

    # -- versions ---------------------------------------------------------------------------

    def fetch(self) -> tuple[list[DatasetVersion], list[ReceivedPlan], dict[str, LabelNames]]:
        versions = list(reversed(self.operator.dataset_versions()))
        plans = self.operator.received_plans()
        received = {p.plan_hash for p in plans}
        names = {digest: self.operator.label_names(digest)
                 for digest in {v.plan_hash for v in versions if v.plan_hash in received}}
        return versions, plans, names

    def show_data(self, data: tuple[list[DatasetVersion], list[ReceivedPlan],
                                    dict[str, LabelNames]]) -> None:
        versions, plans, self.label_names = data
        self.model.set_rows(versions)
        chosen = self.plan_combo.currentData()
        self.plan_combo.clear()
        for plan in plans:
            self.plan_combo.addItem(tr("{study}, plan {plan_hash} ({status})").format(
                study=plan.study, plan_hash=short_hash(plan.plan_hash), status=plan.status),
                plan.plan_hash)
        if self.plan_combo.count() == 0:
            self.plan_combo.addItem(tr("no study plan received: import one on the Studies page"),
                                    None)
        else:
            approved = [i for i, plan in enumerate(plans) if plan.status == "approved"]
            index = self.plan_combo.findData(chosen)
            self.plan_combo.setCurrentIndex(index if index >= 0 else (approved or [0])[0])
        if self.model.rowCount() and not self.table.selectionModel().selectedRows():
            self.table.selectRow(0)
        self._selected()
        self._update_buttons()

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.details.setPlainText(tr("No dataset version registered yet."))
            return
        v: DatasetVersion = self.model.row(rows[0].row())
        parent = (tr("derived from version {parent}").format(
            parent=short_hash(v.parent_version)) if v.parent_version
                  else tr("the first version of this dataset"))
        self.details.setPlainText(
            tr("{dataset}, version {version}\n{parent}\nsource: {source_name} ({source_format}, "
               "sha256 {source_hash})\nplan: {plan}\nrows: {rows}\ncleaning policy: {policy}\n"
               "registered by {actor}\n\n").format(
                dataset=v.dataset, version=short_hash(v.version), parent=parent,
                source_name=v.source_name, source_format=v.source_format,
                source_hash=short_hash(v.source_hash), plan=short_hash(v.plan_hash) or "-",
                rows=v.rows, policy=policy_text(v.policy), actor=v.actor)
            + "\n".join(summary_lines(v.report, self.label_names.get(v.plan_hash or "")))
            + tr("\n\nCtrl+C in the list copies the full version id."))

    # -- registering ------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        idle = not self.runner.busy
        enable(self.choose_button, idle and self.plan_combo.currentData() is not None)
        ready = self.report is not None and not self.report.blocking
        enable(self.register_button, idle and ready)
        self.discard_button.setEnabled(idle and self.report is not None)

    def choose_file(self) -> None:
        path = dialogs.open_file(self, tr("Register a data file"), tr(DATA_FILES))
        if path is not None:
            self.check(path)

    def check(self, path: Path) -> None:
        """Validate ``path`` against the chosen plan in the background."""
        plan_hash = self.plan_combo.currentData()
        if plan_hash is None:
            return
        self.discard()
        self.path = path
        self.check_state.setText(tr("checking {name}...").format(name=path.name))
        self.runner.start("check",
                          lambda _w: self.operator.check_dataset(path, plan_hash=plan_hash),
                          on_done=self.show_report, on_error=self._check_failed)

    def _check_failed(self, code: str, message: str) -> None:
        self.check_state.setText("")
        self.path = None
        self.task_failed(code, message)

    def show_report(self, report: ValidationReport) -> None:
        """Show a validation report and the policy choices its issues need."""
        self.report = report
        self.check_state.setText("")
        self._clear_policy()
        fields = [name for name in POLICY_CHOICES if name in report.policy_fields]
        default = Policy().to_json()
        for name in fields:
            combo = QComboBox()
            combo.addItems(list(POLICY_CHOICES[name]))
            combo.setCurrentText(str(default.get(name, POLICY_CHOICES[name][0])))
            combo.setAccessibleName(tr("Policy for {name}").format(name=name))
            label = QLabel(f"{name.replace('_', ' ').capitalize()}:")
            label.setBuddy(combo)
            self.policy_form.addRow(label, combo)
            self.policy_combos[name] = combo
        if report.blocking:
            verdict = tr("Blocking issues: fix the file; no policy can register it.")
        elif fields:
            verdict = tr("Choose what to do with each kind of issue, then Register.")
        else:
            verdict = tr("No issues: ready to register.")
        self.report_text.setPlainText(f"{report.to_text()}\n\n{verdict}")
        self.report_box.setTitle(tr("Validation report: {source_name}, {rows} rows").format(
            source_name=report.source_name, rows=report.rows))
        self.report_box.setVisible(True)
        self._update_buttons()

    def policy(self) -> Policy:
        """The policy the combo boxes describe (defaults for kinds not found)."""
        chosen = Policy().to_json()
        chosen.update({name: combo.currentText() for name, combo in self.policy_combos.items()})
        return Policy.from_json(chosen)

    def register(self) -> None:
        """Register the checked file under the chosen policy, in the background."""
        if self.report is None or self.path is None:
            return
        path, plan_hash, policy = self.path, self.plan_combo.currentData(), self.policy()
        self.runner.start(
            "register",
            lambda _w: self.operator.register_dataset(path, plan_hash=plan_hash, policy=policy),
            on_done=self._registered, on_error=self.task_failed)

    def _registered(self, version: DatasetVersion) -> None:
        self.registered = version
        self.discard()
        self.check_state.setText(tr("registered {dataset} version {version} ({rows} rows)")
                                 .format(dataset=version.dataset,
                                         version=short_hash(version.version), rows=version.rows))
        self.refresh()
        self.changed.emit(tr("{dataset} version {version} registered").format(
            dataset=version.dataset, version=short_hash(version.version)))

    def _clear_policy(self) -> None:
        while self.policy_form.rowCount():
            self.policy_form.removeRow(0)
        self.policy_combos.clear()

    def discard(self) -> None:
        self.report = None
        self.path = None
        self._clear_policy()
        self.report_box.setVisible(False)
        self._update_buttons()

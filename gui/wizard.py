"""The first-run wizard: a new site from an empty folder to its first registered dataset.

Three steps, each the same facade call as a ``tessera site`` command: import the site kit
(``tessera site import-kit``; its signature is verified first and the coordinator key's
fingerprint shown for the operator to confirm), choose the site passphrase with strength
feedback (``tessera site unlock-check`` creates the keystore), and register the first
dataset against a study plan's data dictionary (``tessera site studies receive`` and
``tessera site dataset register``). Slow steps run in workers; the wizard ends with the
unlocked :attr:`FirstRunWizard.operator`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from client_app.facade import (
    POLICY_CHOICES,
    KitPreview,
    Policy,
    ReceivedPlan,
    SiteOperator,
    ValidationReport,
    create_keystore,
    import_kit,
    passphrase_strength,
    preview_kit,
)
from common.roles import Policy as AccessPolicy
from gui import dialogs
from gui.pages.studies import summary_html
from gui.text import tr
from gui.workers import TaskRunner


def _file_row(edit: QLineEdit, button: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(button)
    return row


class _Step(QWizardPage):
    """A page whose Next runs ``work`` in a worker and moves on when it succeeds."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.owner = wizard
        self.runner = TaskRunner(self)
        self.done_ok = False
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAccessibleName(tr("Message"))

    def run(self, name: str, work: Callable[[], Any], done: Callable[[Any], None],
            *, advance: bool = False) -> None:
        self.message.setText(tr("Working..."))

        def finished(result: Any) -> None:
            self.message.setText("")
            done(result)
            if advance:
                self.done_ok = True
                self.completeChanged.emit()
                self.owner.next()

        self.runner.start(name, lambda _w: work(), on_done=finished,
                          on_error=lambda _c, m: self.message.setText(m))


class KitStep(_Step):
    """Choose the kit, see whom it is for and who signed it, confirm, import."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__(wizard)
        self.setTitle(tr("1. Import the site kit"))
        self.setSubTitle(tr("The coordinator sent this site a kit (a folder or a .tar.gz). "
                            "Its signature is checked before anything is written."))
        self.preview: KitPreview | None = None
        self.path_edit = QLineEdit()
        self.path_edit.setAccessibleName(tr("Site kit"))
        browse = QPushButton(tr("&Browse..."))
        browse.clicked.connect(self._browse)
        self.check_button = QPushButton(tr("&Check the kit"))
        self.check_button.clicked.connect(self.check)
        self.details = QTextBrowser()
        self.details.setAccessibleName(tr("What the kit says"))
        self.confirm = QCheckBox(tr("I compared the coordinator &fingerprint with the one the "
                                    "coordinator gave me (phone or letter)"))
        self.confirm.setEnabled(False)
        self.confirm.toggled.connect(lambda _c: self.completeChanged.emit())
        layout = QVBoxLayout(self)
        layout.addLayout(_file_row(self.path_edit, browse))
        layout.addWidget(self.check_button)
        layout.addWidget(self.details, 1)
        layout.addWidget(self.confirm)
        layout.addWidget(self.message)

    def _browse(self) -> None:
        path = dialogs.open_file(self, tr("Choose the site kit"),
                                 tr("Site kits (*.tar.gz);;All files (*)"))
        if path is not None:
            self.path_edit.setText(str(path))

    def check(self) -> None:
        path = Path(self.path_edit.text().strip())
        self.preview = None
        self.confirm.setChecked(False)
        self.confirm.setEnabled(False)
        self.run("check", lambda: preview_kit(path), self._checked)

    def _checked(self, preview: KitPreview) -> None:
        self.preview = preview
        self.details.setHtml(
            tr("<p>Signature <b>verified</b>: the kit is for site <b>{site}</b> of federation "
               "<b>{federation}</b>.</p><p>Coordinator key fingerprint:<br><b><tt>"
               "{fingerprint}</tt></b></p><p>Coordinator address: {address}<br>Sites: "
               "{sites}</p>").format(site=preview.site, federation=preview.federation,
                                     fingerprint=preview.coordinator_fingerprint,
                                     address=preview.superlink, sites=", ".join(preview.sites)))
        self.confirm.setEnabled(True)

    def isComplete(self) -> bool:
        return self.preview is not None and self.confirm.isChecked()

    def validatePage(self) -> bool:
        if self.done_ok:
            return True
        path, site_dir = Path(self.path_edit.text().strip()), self.owner.site_dir
        self.run("import", lambda: import_kit(path, site_dir), lambda _p: None, advance=True)
        return False


class PassphraseStep(_Step):
    """Name the operator, choose the passphrase (rated as it is typed), create the keystore."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__(wizard)
        self.setTitle(tr("2. Choose the site passphrase"))
        self.setSubTitle(tr("It encrypts the site's keys and data. Nobody can recover it: "
                            "keep it where the site's operators can reach it."))
        self.name_edit = QLineEdit(wizard.actor)
        self.name_edit.setAccessibleName(tr("Operator name"))
        self.first = QLineEdit()
        self.first.setEchoMode(QLineEdit.EchoMode.Password)
        self.first.setAccessibleName(tr("Passphrase"))
        self.second = QLineEdit()
        self.second.setEchoMode(QLineEdit.EchoMode.Password)
        self.second.setAccessibleName(tr("Passphrase again"))
        self.meter = QProgressBar()
        self.meter.setRange(0, 4)
        self.meter.setAccessibleName(tr("Passphrase strength"))
        self.advice = QLabel("")
        self.advice.setWordWrap(True)
        for edit in (self.name_edit, self.first, self.second):
            edit.textChanged.connect(self._rate)
        form = QFormLayout()
        for text, widget in ((tr("Your &name:"), self.name_edit),
                             (tr("&Passphrase:"), self.first), (tr("&Again:"), self.second)):
            label = QLabel(text)
            label.setBuddy(widget)
            form.addRow(label, widget)
        form.addRow(tr("Strength:"), self.meter)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advice)
        layout.addWidget(self.message)
        self._rate()

    def _rate(self) -> None:
        strength = passphrase_strength(self.first.text())
        self.meter.setValue(strength.score)
        self.meter.setFormat(strength.label)
        same = self.first.text() == self.second.text()
        self.advice.setText(strength.advice if same or not self.second.text()
                            else tr("The two passphrases differ."))
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return (bool(self.name_edit.text().strip()) and self.first.text() == self.second.text()
                and passphrase_strength(self.first.text()).acceptable)

    def validatePage(self) -> bool:
        if self.done_ok:
            return True
        name, secret = self.name_edit.text().strip(), self.first.text()
        self.run("keystore", lambda: self.owner.create_site(name, secret), self.owner.opened,
                 advance=True)
        return False


class DatasetStep(_Step):
    """Receive a study plan, check a data file against its data dictionary, register it."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__(wizard)
        self.setTitle(tr("3. Register the first dataset"))
        self.setSubTitle(tr("Choose the study plan the coordinator sent, then the data file "
                            "that follows its data dictionary."))
        self.plan: ReceivedPlan | None = None
        self.report: ValidationReport | None = None
        self.plan_edit = QLineEdit()
        self.plan_edit.setAccessibleName(tr("Study plan file"))
        plan_browse = QPushButton(tr("Choose the &plan..."))
        plan_browse.clicked.connect(
            lambda: self._browse(self.plan_edit, tr("Study plans (*.toml)")))
        self.receive_button = QPushButton(tr("&Read the plan"))
        self.receive_button.clicked.connect(self.receive)
        self.summary = QTextBrowser()
        self.summary.setAccessibleName(tr("The study's data dictionary"))
        self.data_edit = QLineEdit()
        self.data_edit.setAccessibleName(tr("Data file"))
        data_browse = QPushButton(tr("Choose the &data file..."))
        data_browse.clicked.connect(
            lambda: self._browse(self.data_edit, tr("Data files (*.csv *.parquet)")))
        self.check_button = QPushButton(tr("C&heck the file"))
        self.check_button.clicked.connect(self.check)
        self.report_text = QPlainTextEdit()
        self.report_text.setReadOnly(True)
        self.report_text.setAccessibleName(tr("Validation report"))
        self.policy_form = QFormLayout()
        self.policy_combos: dict[str, QComboBox] = {}
        layout = QVBoxLayout(self)
        layout.addLayout(_file_row(self.plan_edit, plan_browse))
        layout.addWidget(self.receive_button)
        layout.addWidget(self.summary, 2)
        layout.addLayout(_file_row(self.data_edit, data_browse))
        layout.addWidget(self.check_button)
        layout.addWidget(self.report_text, 1)
        layout.addLayout(self.policy_form)
        layout.addWidget(self.message)

    def _browse(self, edit: QLineEdit, filters: str) -> None:
        path = dialogs.open_file(self, tr("Choose a file"), filters)
        if path is not None:
            edit.setText(str(path))

    def receive(self) -> None:
        operator, path = self.owner.operator, Path(self.plan_edit.text().strip())
        assert operator is not None
        self.run("receive", lambda: operator.receive_plan(path), self._received)

    def _received(self, plan: ReceivedPlan) -> None:
        self.plan = plan
        self.summary.setHtml(summary_html(plan))

    def check(self) -> None:
        operator, path = self.owner.operator, Path(self.data_edit.text().strip())
        if operator is None or self.plan is None:
            self.message.setText(tr("Read the study plan first."))
            return
        digest = self.plan.plan_hash
        self.run("check", lambda: operator.check_dataset(path, plan_hash=digest), self._checked)

    def _checked(self, report: ValidationReport) -> None:
        self.report = report
        while self.policy_form.rowCount():
            self.policy_form.removeRow(0)
        self.policy_combos.clear()
        default = Policy().to_json()
        for name in (n for n in POLICY_CHOICES if n in report.policy_fields):
            combo = QComboBox()
            combo.addItems(list(POLICY_CHOICES[name]))
            combo.setCurrentText(str(default.get(name, POLICY_CHOICES[name][0])))
            combo.setAccessibleName(tr("What to do with {kind}").format(kind=name))
            self.policy_form.addRow(f"{name.replace('_', ' ').capitalize()}:", combo)
            self.policy_combos[name] = combo
        verdict = (tr("Blocking issues: fix the file first.") if report.blocking
                   else tr("Ready: Finish registers it."))
        self.report_text.setPlainText(f"{report.to_text()}\n\n{verdict}")
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.done_ok or (self.report is not None and not self.report.blocking)

    def validatePage(self) -> bool:
        if self.done_ok:
            return True
        operator, plan = self.owner.operator, self.plan
        assert operator is not None and plan is not None
        chosen = Policy().to_json()
        chosen.update({n: c.currentText() for n, c in self.policy_combos.items()})
        policy, path = Policy.from_json(chosen), Path(self.data_edit.text().strip())

        def registered(version: object) -> None:
            self.owner.registered(version)
            self.done_ok = True
            self.owner.accept()

        self.run("register", lambda: operator.register_dataset(
            path, plan_hash=plan.plan_hash, policy=policy), registered)
        return False


class FirstRunWizard(QWizard):
    """A new site, step by step; :attr:`operator` is the unlocked site at the end."""

    def __init__(self, site_dir: Path, *, policy: AccessPolicy, actor: str = "",
                 kit_imported: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(tr("Set up this Tessera site"))
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.site_dir, self.policy, self.actor = site_dir, policy, actor
        self.operator: SiteOperator | None = None
        self.dataset: object = None
        self.kit_step = KitStep(self)
        self.passphrase_step = PassphraseStep(self)
        self.dataset_step = DatasetStep(self)
        if not kit_imported:
            self.addPage(self.kit_step)
        self.addPage(self.passphrase_step)
        self.addPage(self.dataset_step)
        self.resize(760, 620)

    def create_site(self, name: str, passphrase: str) -> SiteOperator:
        """Create the keystore and unlock the site as ``name`` (worker thread)."""
        create_keystore(self.site_dir, passphrase)
        return SiteOperator.open(self.site_dir, passphrase=passphrase, actor=name,
                                 policy=self.policy)

    def opened(self, operator: SiteOperator) -> None:
        self.operator = operator

    def registered(self, version: object) -> None:
        self.dataset = version

"""The first-run wizard: from an empty folder to the first registered dataset."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from client_app.custody.vault import keystore_path
from client_app.datasets.versions import dataset_versions
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.plan import bundled_plan_path
from gui.app import default_policy
from gui.wizard import FirstRunWizard
from privacy.signing import fingerprint
from server.provisioning import init_federation
from tests.gui.conftest import Answers, messy_csv

WAIT_MS = 30_000
LEFT = Qt.MouseButton.LeftButton
STRONG = "copper lantern orbit meadow 42"


def test_the_wizard_imports_the_kit_sets_the_passphrase_and_registers_the_first_dataset(
    qtbot, tmp_path: Path, answers: Answers,
) -> None:
    fed = init_federation(tmp_path / "federation", name="fed", sites=["h1"], archives=False)
    folder = tmp_path / "h1"
    wizard = FirstRunWizard(folder, policy=default_policy(), actor="alice")
    qtbot.addWidget(wizard)
    wizard.show()

    kit = wizard.kit_step
    assert wizard.currentPage() is kit and not kit.isComplete()
    kit.path_edit.setText(str(fed.site_kit("h1")))
    with qtbot.waitSignal(kit.runner.done, timeout=WAIT_MS):
        qtbot.mouseClick(kit.check_button, LEFT)
    key = fed.manifest.coordinator_signing_key
    assert fingerprint(key) in kit.details.toPlainText()
    assert "verified" in kit.details.toPlainText() and not kit.isComplete()
    assert not folder.exists()  # checking wrote nothing
    kit.confirm.setChecked(True)
    assert kit.isComplete()
    with qtbot.waitSignal(kit.runner.done, timeout=WAIT_MS):
        wizard.next()
    qtbot.waitUntil(lambda: wizard.currentPage() is wizard.passphrase_step, timeout=WAIT_MS)

    step = wizard.passphrase_step
    assert step.name_edit.text() == "alice"
    qtbot.keyClicks(step.first, "password")
    assert step.meter.format() == "too short" and not step.isComplete()
    step.first.clear()
    qtbot.keyClicks(step.first, STRONG)
    qtbot.keyClicks(step.second, STRONG[:-1])
    assert "differ" in step.advice.text() and not step.isComplete()
    qtbot.keyClicks(step.second, STRONG[-1])
    assert step.meter.format() == "strong" and step.isComplete()
    with qtbot.waitSignal(step.runner.done, timeout=WAIT_MS):
        wizard.next()
    qtbot.waitUntil(lambda: wizard.currentPage() is wizard.dataset_step, timeout=WAIT_MS)
    assert keystore_path(open_site_dir(folder)).exists()
    assert wizard.operator is not None and wizard.operator.actor == "alice"

    data = wizard.dataset_step
    data.plan_edit.setText(str(bundled_plan_path("breast_cancer")))
    with qtbot.waitSignal(data.runner.done, timeout=WAIT_MS):
        qtbot.mouseClick(data.receive_button, LEFT)
    assert "benign" in data.summary.toPlainText()  # the data dictionary's label
    data.data_edit.setText(str(messy_csv(tmp_path)))
    with qtbot.waitSignal(data.runner.done, timeout=WAIT_MS):
        qtbot.mouseClick(data.check_button, LEFT)
    assert "missing" in data.policy_combos and data.isComplete()
    data.policy_combos["missing"].setCurrentText("drop")
    with qtbot.waitSignal(wizard.accepted, timeout=WAIT_MS):
        wizard.button(QWizard.WizardButton.FinishButton).click()
    versions = dataset_versions(open_site_dir(folder))
    assert [(v.dataset, v.rows, v.actor) for v in versions] == [("breast_cancer", 58, "alice")]
    with SiteStore.open(open_site_dir(folder)) as store:
        kinds = [e.kind for e in store.events()]
    assert kinds.index("kit_imported") < kinds.index("study_plan_received") \
        < kinds.index("dataset_registered")
    assert answers.errors == []


def test_a_folder_with_a_kit_starts_at_the_passphrase(qtbot, tmp_path: Path) -> None:
    wizard = FirstRunWizard(tmp_path / "x", policy=default_policy(), kit_imported=True)
    qtbot.addWidget(wizard)
    wizard.show()
    assert wizard.currentPage() is wizard.passphrase_step

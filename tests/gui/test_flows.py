"""The operator's main flows, driven through the real widgets, checked in the site store."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from client_app.custody.vault import unlock_vault
from client_app.datasets.versions import dataset_versions
from client_app.governance.consent import history
from client_app.governance.studies import received_plans
from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from gui.pages.budget import BudgetPage
from gui.pages.consent import ConsentPage
from gui.pages.datasets import DatasetsPage
from gui.pages.studies import StudiesPage
from gui.window import MainWindow
from tests.conftest import TEST_PASSPHRASE
from tests.gui.conftest import Answers, messy_csv, open_page, settle

WAIT_MS = 30_000
LEFT = Qt.MouseButton.LeftButton


def _datasets(qtbot, window: MainWindow) -> DatasetsPage:
    page = open_page(qtbot, window, 1)
    assert isinstance(page, DatasetsPage)
    return page


def _check_file(qtbot, page: DatasetsPage, answers: Answers, path: Path) -> None:
    answers.file = path
    with qtbot.waitSignal(page.runner.done, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(page.choose_button, LEFT)
    assert blocker.args[0] == "check"


def test_registering_a_file_with_missing_values_under_the_drop_policy_adds_a_version(
    qtbot, window: MainWindow, answers: Answers, site: SiteDir, tmp_path: Path, qtmodeltester,
) -> None:
    page = _datasets(qtbot, window)
    _check_file(qtbot, page, answers, messy_csv(tmp_path))
    assert page.report is not None and "missing" in page.report.issue_kinds
    assert page.report_box.isVisible()
    assert "missing values in 2 rows" in page.report_text.toPlainText()
    combo = page.policy_combos["missing"]
    assert combo.currentText() == "refuse"
    qtbot.keyClicks(combo, "drop")
    assert combo.currentText() == "drop"
    with qtbot.waitSignal(page.runner.done, timeout=WAIT_MS):
        qtbot.mouseClick(page.register_button, LEFT)
    settle(qtbot, page)
    versions = dataset_versions(site)
    assert len(versions) == 1
    assert versions[0].policy["missing"] == "drop"
    assert versions[0].rows == 58
    assert versions[0].actor == "alice"
    assert not page.report_box.isVisible()
    assert page.model.rowCount() == 1
    assert "missing 2" in page.model.index(0, 6).data()
    # The label's classes are named from the plan's data dictionary, not shown as 0 and 1.
    details = page.details.toPlainText()
    assert "labels: not benign (0): " in details and ", benign (1): " in details
    qtmodeltester.check(page.model)
    assert answers.errors == []


def test_registering_under_the_refuse_policy_shows_the_refusal_and_stores_nothing(
    qtbot, window: MainWindow, answers: Answers, site: SiteDir, tmp_path: Path,
) -> None:
    page = _datasets(qtbot, window)
    _check_file(qtbot, page, answers, messy_csv(tmp_path))
    with qtbot.waitSignal(page.runner.failed, timeout=WAIT_MS):
        qtbot.mouseClick(page.register_button, LEFT)
    assert dataset_versions(site) == []
    assert len(answers.errors) == 1
    assert "missing" in answers.errors[0]
    assert "Traceback" not in answers.errors[0]


def test_a_file_without_the_label_column_cannot_be_registered(
    qtbot, window: MainWindow, answers: Answers, tmp_path: Path,
) -> None:
    page = _datasets(qtbot, window)
    bad = tmp_path / "bad.csv"
    lines = messy_csv(tmp_path, missing_rows=()).read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n",
                   encoding="utf-8")
    _check_file(qtbot, page, answers, bad)
    assert page.report is not None and page.report.blocking
    assert not page.register_button.isEnabled()
    assert "Blocking issues" in page.report_text.toPlainText()


def test_approving_a_study_records_the_approval_of_its_plan_hash(
    qtbot, window: MainWindow, answers: Answers, site: SiteDir, qtmodeltester,
) -> None:
    page = open_page(qtbot, window, 2)
    assert isinstance(page, StudiesPage)
    digest = received_plans(site)[0].plan_hash
    assert page.select_hash(digest)
    assert digest in page.summary.toPlainText()
    answers.confirm = False
    qtbot.mouseClick(page.approve_button, LEFT)
    with SiteStore.open(site) as store:
        assert not store.is_approved(digest)
    answers.confirm = True
    with qtbot.waitSignal(page.changed, timeout=WAIT_MS):
        qtbot.mouseClick(page.approve_button, LEFT)
    settle(qtbot, page)
    assert len(answers.questions) == 2 and digest in answers.questions[-1]
    with SiteStore.open(site) as store:
        assert store.is_approved(digest)
        assert store.approvals()[-1].actor == "alice"
    assert page.selected() is not None and page.selected().status == "approved"
    assert not page.approve_button.isEnabled() and page.revoke_button.isEnabled()
    assert window.statusBar().currentMessage() == (
        f"study breast_cancer {digest[:6]}...{digest[-5:]} approved")
    qtmodeltester.check(page.model)


def test_withdrawing_a_patient_appears_in_the_consent_history(
    qtbot, window: MainWindow, answers: Answers, site: SiteDir, qtmodeltester,
) -> None:
    page = open_page(qtbot, window, 3)
    assert isinstance(page, ConsentPage)
    assert not page.withdraw_button.isEnabled()
    qtbot.keyClicks(page.patient_edit, "P-000123")
    qtbot.keyClicks(page.note_edit, "phoned the ward")
    with qtbot.waitSignal(page.changed, timeout=WAIT_MS):
        qtbot.mouseClick(page.withdraw_button, LEFT)
    settle(qtbot, page)
    events = history(unlock_vault(site, TEST_PASSPHRASE))
    assert [(e.action, e.patient_id, e.scope, e.actor) for e in events] == [
        ("withdraw", "P-000123", "*", "alice")]
    assert page.model.rowCount() == 1
    assert page.model.index(0, 3).data() == "P-000123"
    assert page.patient_edit.text() == ""
    qtmodeltester.check(page.model)


def test_unchecking_a_sharing_box_stops_sharing_and_is_a_site_event(
    qtbot, window: MainWindow, site: SiteDir,
) -> None:
    page = open_page(qtbot, window, 4)
    assert isinstance(page, BudgetPage)
    assert page.share_importance.isChecked() and page.share_counts.isChecked()
    with qtbot.waitSignal(page.changed, timeout=WAIT_MS):
        qtbot.mouseClick(page.share_importance, LEFT)
    settle(qtbot, page)
    with SiteStore.open(site) as store:
        assert store.setting("evaluation.share_importance") == "no"
        assert store.setting("evaluation.share_own_counts") is None
        [event] = store.events(kind="sharing_changed")
    assert event.details["what"] == "importance" and event.details["allowed"] is False
    assert not page.share_importance.isChecked() and page.share_counts.isChecked()


def test_lowering_the_ceiling_is_stored_and_raising_it_needs_confirmation(
    qtbot, window: MainWindow, answers: Answers, site: SiteDir, qtmodeltester,
) -> None:
    page = open_page(qtbot, window, 4)
    assert isinstance(page, BudgetPage)
    assert page.ceiling_spin.value() == 10.0
    page.ceiling_spin.selectAll()
    qtbot.keyClicks(page.ceiling_spin, "4.5")
    with qtbot.waitSignal(page.changed, timeout=WAIT_MS):
        qtbot.mouseClick(page.set_button, LEFT)
    settle(qtbot, page)
    with SiteStore.open(site) as store:
        assert store.ceiling() == 4.5
    assert answers.questions == []

    page.ceiling_spin.selectAll()
    qtbot.keyClicks(page.ceiling_spin, "20")
    answers.confirm = False
    qtbot.mouseClick(page.set_button, LEFT)
    with SiteStore.open(site) as store:
        assert store.ceiling() == 4.5
    assert len(answers.questions) == 1 and "20" in answers.questions[0]
    assert page.ceiling_spin.value() == 4.5
    qtmodeltester.check(page.model)

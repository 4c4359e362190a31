"""The dashboard: attention items appear, open the page that resolves them, and resolve;
notifications are raised for what is new; the participation report from the app."""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
from PySide6.QtCore import Qt

from client_app.custody.site_secrets import ledger_key
from client_app.facade import Notice, SiteOperator
from client_app.governance.studies import receive_plan, received_plans
from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from common.plan import bundled_plan_path
from gui.notify import notice_target
from gui.pages.budget import BudgetPage
from gui.pages.dashboard import DashboardPage
from gui.pages.studies import StudiesPage
from gui.window import MainWindow
from tests.gui.conftest import LOAD_MS, Answers, open_page, reload, settle

LEFT = Qt.MouseButton.LeftButton


def _dashboard(qtbot, window: MainWindow) -> DashboardPage:
    page = open_page(qtbot, window, 0)
    assert isinstance(page, DashboardPage)
    return page


def test_a_study_waiting_for_review_is_an_item_that_opens_studies_and_resolves(
    qtbot, window: MainWindow, answers: Answers, site: SiteDir,
) -> None:
    board = _dashboard(qtbot, window)
    digest = received_plans(site)[0].plan_hash
    [item] = board.attention
    assert item.startswith("Study breast_cancer (plan ") and "waiting for your review" in item
    studies = window.pages[2]
    assert isinstance(studies, StudiesPage)
    with qtbot.waitSignal(studies.loaded, timeout=LOAD_MS):
        qtbot.mouseClick(board.open_button, LEFT)
    assert window.current is studies
    assert studies.selected() is not None and studies.selected().plan_hash == digest
    with qtbot.waitSignal(board.loaded, timeout=LOAD_MS):
        with qtbot.waitSignal(studies.changed, timeout=LOAD_MS):
            qtbot.mouseClick(studies.approve_button, LEFT)
    settle(qtbot, board)
    assert not any("waiting for your review" in text for text in board.attention)
    assert board.attention == ["The node is stopped: start it to take part in the approved "
                               "studies' rounds"]


def test_refusals_raise_a_notification_and_resolve_once_seen(
    qtbot, window: MainWindow, site: SiteDir, answers: Answers,
) -> None:
    board = _dashboard(qtbot, window)
    assert window.notifier.shown == []
    with SiteStore.open(site) as store:
        store.record_event("budget_refusal", plan_hash=received_plans(site)[0].plan_hash,
                           details={"round": 3, "projected": 10.4, "ceiling": 10.0,
                                    "delta": 1e-5})
    reload(qtbot, board)
    [notice] = window.notifier.shown
    assert notice.title == "Round refused" and notice.page == "audit"
    assert "Refused round 3 of breast_cancer" in notice.text
    assert window.banner.isVisible() or window.notifier.uses_tray
    refusal = [t for t in board.attention if "refused" in t]
    assert refusal and "10.400" in refusal[0]
    assert board.ack_button.isEnabled()
    qtbot.mouseClick(board.ack_button, LEFT)
    settle(qtbot, board)
    assert not [t for t in board.attention if "refused" in t]
    assert not board.ack_button.isEnabled()


def test_a_new_study_request_is_notified_and_its_banner_opens_studies(
    qtbot, window: MainWindow, site: SiteDir, answers: Answers,
) -> None:
    board = _dashboard(qtbot, window)
    receive_plan(site, bundled_plan_path("diabetes").read_text(encoding="utf-8"))
    reload(qtbot, board)
    assert [n.title for n in window.notifier.shown] == ["New study request"]
    assert "diabetes" in window.notifier.shown[0].text
    window.banner.open_button.click()
    assert window.current.key == "studies"


def test_the_report_button_writes_a_pdf_whose_first_page_renders(
    qtbot, window: MainWindow, site: SiteDir, answers: Answers, tmp_path: Path,
) -> None:
    studies = open_page(qtbot, window, 2)
    assert isinstance(studies, StudiesPage) and studies.report_button.isEnabled()
    answers.save = tmp_path / "board.pdf"
    with qtbot.waitSignal(studies.runner.done, timeout=LOAD_MS):
        qtbot.mouseClick(studies.report_button, LEFT)
    assert studies.report_path == answers.save and answers.errors == []
    assert any("board.pdf" in info for info in answers.infos)
    pdf = pdfium.PdfDocument(answers.save)
    text = pdf[0].get_textpage().get_text_range()
    assert "Participation report" in text and "breast_cancer" in text
    assert (pdf[0].render(scale=1, grayscale=True).to_numpy() < 128).sum() > 2000
    pdf.close()


def _spend(operator: SiteOperator, site: SiteDir, dataset: str, *, rounds: int) -> None:
    """DP-SGD rounds of ``dataset`` in the ledger (the site's own key)."""
    digest = received_plans(site)[0].plan_hash
    with SiteStore.open(site, ledger_key=ledger_key(operator.vault)) as store:
        store.set_delta(1e-5, actor="alice")
        for round_ in range(1, rounds + 1):
            store.record_training(plan_hash=digest, study="breast_cancer", run_id="r1",
                                  round=round_, dataset_id=dataset, dataset_version="v1",
                                  noise_multiplier=1.1, sample_rate=0.05, steps=40)


def test_a_budget_item_opens_the_budget_page_with_its_dataset_selected(
    qtbot, window: MainWindow, operator: SiteOperator, site: SiteDir, answers: Answers,
) -> None:
    _spend(operator, site, "breast_cancer", rounds=3)
    _spend(operator, site, "admissions", rounds=1)
    with SiteStore.open(site) as store:
        store.set_ceiling(2.0, actor="alice")  # both datasets past 80%: two budget items
    board = _dashboard(qtbot, window)
    items = [board.items.item(i) for i in range(board.items.count())]
    [budget_item] = [i for i in items if i.text().startswith("breast_cancer has spent")]
    assert [i for i in items if i.text().startswith("admissions has spent")]
    board.items.setCurrentItem(budget_item)
    budget = window.pages[4]
    assert isinstance(budget, BudgetPage)
    with qtbot.waitSignal(budget.loaded, timeout=LOAD_MS):
        qtbot.mouseClick(board.open_button, LEFT)
    assert window.current is budget
    assert budget.dataset_combo.currentText() == "breast_cancer"
    shown = {budget.model.row(r).dataset for r in range(budget.model.rowCount())}
    assert shown == {"breast_cancer"}
    assert budget.selected() is not None and budget.selected().dataset == "breast_cancer"
    # Already on the budget page: a notice about the other dataset switches at once.
    window.open_page("budget", "admissions")
    assert budget.dataset_combo.currentText() == "admissions"
    settle(qtbot, budget)
    assert budget.dataset_combo.currentText() == "admissions"
    assert {budget.model.row(r).dataset for r in range(budget.model.rowCount())} == \
        {"admissions"}


def test_the_budget_notice_names_the_dataset_it_opens() -> None:
    notice = Notice("budget:breast_cancer", "Privacy budget above 80%", "text", "budget")
    assert notice_target(notice) == "breast_cancer"
    assert notice_target(Notice("study:abc", "New study request", "t", "studies")) == "abc"
    assert notice_target(Notice("refusal:3", "Round refused", "t", "audit")) == ""

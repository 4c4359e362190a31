"""The dashboard: attention items appear, open the page that resolves them, and resolve;
notifications are raised for what is new; the participation report from the app."""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
from PySide6.QtCore import Qt

from client_app.governance.studies import receive_plan, received_plans
from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from common.plan import bundled_plan_path
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

"""The main window: pages, keyboard use, and every table model through qtmodeltester."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QPushButton

from client_app.facade import SiteOperator
from client_app.governance.consent import withdraw
from client_app.store.site_store import SiteStore
from gui.models import RowsModel
from gui.window import PAGES, MainWindow
from tests.gui.conftest import StudySite, open_page


def test_ctrl_and_a_digit_switch_pages(qtbot, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.waitActive(window)
    for number in (3, 7, 1, 5):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_0 + number),
                       Qt.KeyboardModifier.ControlModifier)
        assert window.stack.currentIndex() == number - 1
        assert window.sidebar.currentRow() == number - 1
    assert [p.title for p in window.pages] == [p.title for p in PAGES]
    assert len(window.pages) == 8


def test_every_button_is_reachable_by_tab_and_has_a_mnemonic(window: MainWindow) -> None:
    buttons = [b for page in window.pages for b in page.findChildren(QPushButton)]
    assert len(buttons) >= 15
    for button in buttons:
        assert button.focusPolicy() & Qt.FocusPolicy.TabFocus, button.text()
        assert "&" in button.text(), button.text()
    for page in window.pages:
        texts = [b.text().lower() for b in page.findChildren(QAbstractButton) if b.text()]
        keys = [t[t.index("&") + 1] for t in texts if "&" in t]
        assert len(keys) == len(set(keys)), f"{page.title}: clashing mnemonics {texts}"


@pytest.mark.slow  # uses the session's in-process study
def test_every_table_model_passes_the_model_tester_with_real_rows(
    qtbot, study_window: MainWindow, study_site: StudySite, qtmodeltester,
) -> None:
    operator: SiteOperator = study_window.operator
    withdraw(operator.vault, ["P-9999"], actor="alice", note="test")
    with SiteStore.open(study_site.site) as store:
        assert store.ledger()
    for number in range(len(study_window.pages)):
        open_page(qtbot, study_window, number)
    models = [m for page in study_window.pages for m in page.findChildren(RowsModel)]
    assert len(models) >= 6  # the dashboard lists in plain widgets, not a table
    filled = [m for m in models if m.rowCount() > 0]
    assert len(filled) >= 5  # studies, consent, ledger, audit, datasets
    for model in models:
        qtmodeltester.check(model)

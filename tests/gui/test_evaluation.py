"""Local evaluation from the app: the worker's result fills the page; Cancel stops it."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QRunnable, Qt, QThreadPool

from gui.pages.evaluation import EvaluationPage
from gui.window import MainWindow
from tests.gui.conftest import Answers, StudySite, open_page

pytestmark = pytest.mark.slow  # the session's in-process study takes most of a minute
WAIT_MS = 60_000
LEFT = Qt.MouseButton.LeftButton


def _page(qtbot, window: MainWindow) -> EvaluationPage:
    page = open_page(qtbot, window, 5)
    assert isinstance(page, EvaluationPage)
    return page


def test_running_an_evaluation_shows_metrics_confusion_matrix_and_roc_curve(
    qtbot, study_window: MainWindow, study_site: StudySite, answers: Answers, qtmodeltester,
) -> None:
    page = _page(qtbot, study_window)
    assert page.model_combo.count() == 1 and page.model_combo.currentData() is not None
    assert page.run_button.isEnabled()
    progress: list[float] = []
    page.runner.progress.connect(progress.append)
    with qtbot.waitSignal(page.runner.done, timeout=WAIT_MS):
        qtbot.mouseClick(page.run_button, LEFT)
    result = page.result
    assert result is not None and answers.errors == []
    assert result.plan_hash == study_site.plan_hash
    assert len(progress) >= 3 and progress == sorted(progress) and progress[0] == 0.0
    assert page.progress.value() == 100
    assert page.metrics["accuracy"].text() == f"{result.accuracy:.3f}"
    assert page.metrics["auc"].text() == f"{result.auc:.3f}"
    assert float(page.metrics["auc"].text()) > 0.9
    assert page.metrics["n"].text() == str(result.n)
    cells = [[page.confusion.index(r, c).data() for c in (1, 2)] for r in range(2)]
    assert cells == [[str(result.tp), str(result.fn)], [str(result.fp), str(result.tn)]]
    assert sum(int(v) for row in cells for v in row) == result.n
    lines = page.roc.axes.get_lines()
    assert list(lines[0].get_xdata()) == list(result.roc_fpr)
    assert page.run_button.isEnabled() and not page.cancel_button.isEnabled()
    qtmodeltester.check(page.confusion)


def test_cancel_stops_the_evaluation_and_shows_no_error(
    qtbot, study_window: MainWindow, answers: Answers,
) -> None:
    page = _page(qtbot, study_window)
    pool = QThreadPool.globalInstance()
    threads = pool.maxThreadCount()
    release = threading.Event()
    pool.setMaxThreadCount(1)
    try:
        pool.start(QRunnable.create(lambda: release.wait(30)))  # holds the only thread
        qtbot.mouseClick(page.run_button, LEFT)
        assert page.cancel_button.isEnabled() and not page.run_button.isEnabled()
        with qtbot.waitSignal(page.runner.failed, timeout=WAIT_MS) as blocker:
            qtbot.mouseClick(page.cancel_button, LEFT)
            release.set()
    finally:
        release.set()
        pool.setMaxThreadCount(threads)
    assert blocker.args == ["evaluate", "local evaluation cancelled"]
    assert page.state.text() == "cancelled"
    assert page.result is None
    assert answers.errors == []
    assert page.run_button.isEnabled()

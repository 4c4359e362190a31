"""The Drift page: a real site's drift report, computed in a worker, shown in plain words
with the data dictionary's feature descriptions; and the drift-sharing switch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt

from client_app import facade
from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.facade import SiteOperator
from client_app.store.site_store import SiteStore
from gui.app import default_policy
from gui.pages.drift import DriftPage
from gui.window import PAGES, MainWindow
from server.coordinator import run_study
from tessera.inprocess import InProcessGrid
from tessera.local_federation import LocalFederation
from tests.drift_federation import PASSPHRASE, WATCHED, build, drift_plan, register_shifted
from tests.gui.conftest import Answers, open_page

LEFT = Qt.MouseButton.LeftButton
DRIFT = PAGES.index(DriftPage)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> LocalFederation:
    """A finished one-round study whose first site then registered shifted data."""
    fed = build(tmp_path_factory.mktemp("gui-drift") / "work",
                drift_plan(drift=False, he=False), sites=2)
    agents = [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="1", expected_sites=2, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    register_shifted(fed, 0, towards_max=0.4)
    return fed


@pytest.fixture
def shifted_window(qtbot, shifted: LocalFederation, answers: Answers) -> Iterator[MainWindow]:
    operator = SiteOperator.open(shifted.sites[0].root, passphrase=PASSPHRASE, actor="alice",
                                 policy=default_policy())
    win = MainWindow(operator)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    yield win
    win.close()


@pytest.mark.slow  # an in-process study first
def test_a_shift_is_read_in_plain_words_with_the_dictionarys_names(
        qtbot, shifted_window: MainWindow, shifted: LocalFederation, answers: Answers,
        qtmodeltester) -> None:
    page = open_page(qtbot, shifted_window, DRIFT)
    assert isinstance(page, DriftPage) and answers.errors == []
    assert "has moved a lot" in page.summary.text()
    assert page.model_combo.count() == 1
    rows = [page.model.row(i) for i in range(page.model.rowCount())]
    assert len(rows) == len(shifted.plan.dataset.features)
    assert [r.psi for r in rows] == sorted((r.psi for r in rows), reverse=True)
    assert rows[0].name in WATCHED and rows[0].reading == "major shift"
    unmoved = [r for r in rows if r.name not in WATCHED]
    assert unmoved and all(r.psi == pytest.approx(0.0, abs=0.05) for r in unmoved)
    columns = shifted.plan.dataset.columns or {}
    first = columns[rows[0].name]
    shown = page.model.index(0, 4).data()
    assert first.description in shown and first.unit in shown
    qtmodeltester.check(page.model)


def test_a_site_without_a_kept_model_is_told_what_to_do(qtbot, window: MainWindow,
                                                         answers: Answers) -> None:
    page = open_page(qtbot, window, DRIFT)
    assert isinstance(page, DriftPage)
    assert "not kept a study's final model" in page.summary.text()
    assert page.model.rowCount() == 0 and answers.errors == []


def test_the_sharing_switch_records_the_operators_choice(qtbot, window: MainWindow,
                                                         operator: SiteOperator) -> None:
    page = open_page(qtbot, window, DRIFT)
    assert isinstance(page, DriftPage)
    assert not page.share.isChecked() and not facade.drift_sharing(operator)  # off by default
    with qtbot.waitSignal(page.runner.done, timeout=30_000):
        qtbot.mouseClick(page.share, LEFT)
    assert facade.drift_sharing(operator)
    with SiteStore.open(operator.site) as store:
        changes = [e.details for e in store.events(kind="sharing_changed")]
    assert changes[-1]["what"] == "drift" and changes[-1]["allowed"] is True

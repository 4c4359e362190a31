"""Who may do what in the app: an auditor sees actions disabled, saying the role needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QAbstractButton

from client_app.facade import SiteOperator
from client_app.governance.studies import received_plans
from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.roles import Role
from gui.app import default_policy
from gui.pages.audit import AuditPage
from gui.pages.budget import BudgetPage
from gui.pages.consent import ConsentPage
from gui.pages.dashboard import DashboardPage
from gui.pages.datasets import DatasetsPage
from gui.pages.evaluation import EvaluationPage
from gui.pages.studies import StudiesPage
from gui.window import MainWindow
from server.provisioning import init_federation
from tests.conftest import TEST_PASSPHRASE
from tests.gui.conftest import Answers, open_page


def _auditor_kit(tmp_path: Path) -> Path:
    """A provisioned auditor kit: its keys prove the role its kit.toml names."""
    fed = init_federation(tmp_path / "federation", name="test-federation", sites=["s"],
                          archives=False)
    return fed.auditor_kit


@pytest.fixture
def auditor_window(qtbot, site: SiteDir, tmp_path: Path, answers: Answers) -> MainWindow:
    kit = _auditor_kit(tmp_path)
    operator = SiteOperator.open(site.root, passphrase=TEST_PASSPHRASE, actor="audrey",
                                 policy=default_policy(), kit=kit)
    win = MainWindow(operator)
    qtbot.addWidget(win)
    win.show()
    return win


def test_an_auditor_sees_every_changing_action_disabled_with_the_role_it_needs(
    qtbot, auditor_window: MainWindow,
) -> None:
    assert auditor_window.operator.role is Role.AUDITOR
    for number in range(len(auditor_window.pages)):
        open_page(qtbot, auditor_window, number)
    studies = auditor_window.page(StudiesPage)
    assert isinstance(studies, StudiesPage) and studies.selected() is not None
    gated: list[QAbstractButton] = [
        auditor_window.page(DatasetsPage).choose_button,
        auditor_window.page(DatasetsPage).register_button,
        studies.approve_button, studies.reject_button, studies.import_button,
        auditor_window.page(ConsentPage).withdraw_button,
        auditor_window.page(ConsentPage).import_button,
        auditor_window.page(BudgetPage).set_button,
        auditor_window.page(EvaluationPage).run_button,
        auditor_window.page(DashboardPage).start_button,
    ]
    budget = auditor_window.page(BudgetPage)
    assert isinstance(budget, BudgetPage)
    gated += [budget.share_counts, budget.share_importance]
    for button in gated:
        assert not button.isEnabled(), button.text()
        assert "needs the site_operator role (you are auditor)" in button.toolTip()
    verify = auditor_window.page(AuditPage).verify_button
    assert verify.isEnabled()
    assert "Not available" not in verify.toolTip()


def test_the_facade_refuses_an_auditor_and_records_the_denial(
    site: SiteDir, tmp_path: Path,
) -> None:
    kit = _auditor_kit(tmp_path)
    operator = SiteOperator.open(site.root, passphrase=TEST_PASSPHRASE, actor="audrey",
                                 policy=default_policy(), kit=kit)
    digest = received_plans(site)[0].plan_hash
    with pytest.raises(TesseraError) as caught:
        operator.decide(digest, "approved")
    assert caught.value.code == ErrorCode.PERMISSION_DENIED
    assert "gui studies.approve" in caught.value.message
    with SiteStore.open(site) as store:
        assert not store.is_approved(digest)
        denials = store.events(kind="role_denied")
    assert [d.details["command"] for d in denials] == ["gui studies.approve"]


def test_a_site_folder_without_a_kit_is_operated_by_its_site_operator(
    operator: SiteOperator,
) -> None:
    assert operator.role is Role.SITE_OPERATOR
    assert operator.denial("gui studies.approve") is None
    assert operator.denial("gui no-such.action") is not None  # unknown actions: denied

"""Audit page: records with filters, and verifying the signed log in a worker."""

from __future__ import annotations

from PySide6.QtCore import Qt

from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from gui.pages.audit import AuditPage
from gui.window import MainWindow
from privacy.audit_log import AuditLog
from privacy.sealing import SealingKey
from privacy.signing import SigningKey
from tests.gui.conftest import Answers, open_page

WAIT_MS = 30_000
LEFT = Qt.MouseButton.LeftButton


def _page(qtbot, window: MainWindow) -> AuditPage:
    page = open_page(qtbot, window, 6)
    assert isinstance(page, AuditPage)
    return page


def _write_log(site: SiteDir) -> None:
    log = AuditLog.create(site.audit_dir / "site.log", party=site.name, role="site",
                          signing_key=SigningKey.generate(),
                          auditor_public_hex=SealingKey.generate().public_hex)
    for number in range(3):
        log.append("ceiling_changed", actor="alice", details={"n": number})
    log.checkpoint()


def test_records_are_filtered_by_kind_and_text(
    qtbot, window: MainWindow, site: SiteDir, qtmodeltester,
) -> None:
    with SiteStore.open(site) as store:
        store.set_ceiling(3.0, actor="bob")
        store.record_event("dataset_registered", details={"dataset": "breast_cancer"})
    page = _page(qtbot, window)
    total = page.model.rowCount()
    assert total >= 4  # ceiling set at init and by bob, plan received, dataset registered
    assert page.model.row(0).kind == "dataset_registered"  # newest first
    page.kind_combo.setCurrentText("ceiling_changed")
    assert {page.model.row(r).kind for r in range(page.model.rowCount())} == {"ceiling_changed"}
    assert page.model.index(0, 1).data() == "Changed the privacy ceiling from 10 to 3"
    assert page.model.index(0, 2).data() == "bob"
    qtbot.keyClicks(page.text_filter, "bob")
    assert page.model.rowCount() == 1
    assert page.count.text() == f"1 of {total} records"
    qtmodeltester.check(page.model)


def test_verify_reports_an_intact_log_then_the_first_fault_after_tampering(
    qtbot, window: MainWindow, site: SiteDir, answers: Answers,
) -> None:
    _write_log(site)
    page = _page(qtbot, window)
    with qtbot.waitSignal(page.runner.done, timeout=WAIT_MS):
        qtbot.mouseClick(page.verify_button, LEFT)
    assert page.result.text().startswith("INTACT: 3 records verified")

    path = site.audit_dir / "site.log"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"ceiling_changed"', b'"ceiling_chAnged"')
    path.write_bytes(b"\n".join(lines))
    with qtbot.waitSignal(page.runner.done, timeout=WAIT_MS):
        qtbot.mouseClick(page.verify_button, LEFT)
    assert page.result.text().startswith("FAULT (")
    assert "line 3" in page.result.text()
    assert answers.errors == []


def test_verify_on_a_site_without_a_log_says_why(
    qtbot, window: MainWindow, answers: Answers,
) -> None:
    page = _page(qtbot, window)
    with qtbot.waitSignal(page.runner.failed, timeout=WAIT_MS):
        qtbot.mouseClick(page.verify_button, LEFT)
    assert "has no audit log yet" in page.result.text()
    assert answers.errors == []  # said in place, beside the button

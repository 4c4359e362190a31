"""The window stays responsive: no facade call on the GUI thread, page loads never block,
and importing the app loads neither torch, Opacus nor TenSEAL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, Qt

from client_app.facade import SiteOperator
from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from gui.models import PAGE_SIZE
from gui.pages.audit import AuditPage
from gui.pages.base import Page
from gui.window import MainWindow
from tests.gui.conftest import open_page, reload, settle

#: The longest a facade call or a page load may hold the GUI thread.
BUDGET_S = 0.050
#: How slow every facade call is made here: anything on the GUI thread would show.
SLOW_S = 0.2
#: What the app may ask on the GUI thread: the operator's own fields and role checks.
CHEAP = frozenset({"denial", "allowed", "site"})


@dataclass(frozen=True)
class Call:
    name: str
    on_gui_thread: bool
    seconds: float


@pytest.fixture
def slow_facade(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Call]]:
    """Every public facade method takes SLOW_S longer and records where it ran."""
    calls: list[Call] = []
    main = threading.main_thread()
    names = [n for n, v in vars(SiteOperator).items()
             if callable(v) and not n.startswith("_") and n not in {"open"} | CHEAP]

    def slowed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: SiteOperator, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            time.sleep(SLOW_S)
            try:
                return method(self, *args, **kwargs)
            finally:
                calls.append(Call(name, threading.current_thread() is main,
                                  time.perf_counter() - started))
        return wrapper

    for name in names:
        monkeypatch.setattr(SiteOperator, name, slowed(name, getattr(SiteOperator, name)))
    yield calls


def test_no_page_load_or_facade_call_blocks_the_gui_thread(
    qtbot, slow_facade: list[Call], window: MainWindow,
) -> None:
    for number, page in enumerate(window.pages):
        open_page(qtbot, window, number)
        started = time.perf_counter()
        page.refresh()  # what a page switch or a notification does on the GUI thread
        blocked = time.perf_counter() - started
        assert blocked < BUDGET_S, f"{page.title}: refresh held the GUI thread {blocked:.3f} s"
        settle(qtbot, page)
    started = time.perf_counter()
    window.show_page(4)
    assert time.perf_counter() - started < BUDGET_S
    on_gui = [c for c in slow_facade if c.on_gui_thread]
    assert on_gui == [], f"facade calls on the GUI thread: {sorted({c.name for c in on_gui})}"
    loaded = {c.name for c in slow_facade}
    assert {"dashboard", "received_plans", "budget_snapshot", "activity"} <= loaded


def test_importing_the_app_loads_neither_torch_opacus_nor_tenseal() -> None:
    code = ("import sys\nimport gui.app, gui.window, gui.wizard\n"
            "print(sorted(m for m in ('torch', 'opacus', 'tenseal', 'fpdf') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"QT_QPA_PLATFORM": "offscreen", "PATH": ""})
    assert out.stdout.strip() == "[]"


#: How many records the long-list test's site holds.
MANY = 5000


def _many_records(site: SiteDir) -> None:
    """``MANY`` consent events, written in one transaction (the store's own rows)."""
    with SiteStore.open(site) as store, store.transaction(write=True) as session:
        for number in range(MANY):
            session.add(SiteStore.event_row("consent_withdrawn", plan_hash=None, details={
                "scope": "*", "count": 1, "actor": f"operator-{number % 7}", "refs": []}))


def _gui_thread_seconds(page: Page, action: Callable[[], None]) -> float:
    """How long ``action`` plus the layout and painting it causes keep the GUI thread busy:
    the thread's own CPU time, so that other processes competing for the machine's cores
    do not count as the app's work."""
    started = time.thread_time()
    action()
    page.window().repaint()  # lay out and paint now, not later in the event loop
    QCoreApplication.processEvents()
    return time.thread_time() - started


def test_a_page_load_of_thousands_of_audit_records_stays_within_budget(
    qtbot, window: MainWindow, site: SiteDir,
) -> None:
    """The audit list is paged: showing, filtering and turning pages over thousands of
    records lays out one page only. Each is timed as the best of three."""
    _many_records(site)
    page = open_page(qtbot, window, 6)
    assert isinstance(page, AuditPage)
    data = page.items
    total = len(data)
    assert total > MANY
    assert page.model.rowCount() == PAGE_SIZE and page.model.total == total
    assert page.pager.isVisible()
    assert page.pager.label.text().startswith(f"Rows 1-{PAGE_SIZE} of {total}")
    newest = page.model.row(0)
    loads = [_gui_thread_seconds(page, lambda: page.show_data(data)) for _ in range(3)]
    assert min(loads) < BUDGET_S, f"showing {total} records held the GUI thread {loads}"
    turns = [_gui_thread_seconds(page, page.pager.next.click) for _ in range(3)]
    assert min(turns) < BUDGET_S, f"turning a page held the GUI thread {turns}"
    assert page.model.page == 3 and page.model.headerData(0, Qt.Orientation.Vertical) == \
        str(3 * PAGE_SIZE + 1)
    reload(qtbot, page)  # a reload stays on the page the operator is reading
    assert page.model.page == 3
    typed = [_gui_thread_seconds(page, lambda t=text: page.text_filter.setText(t))
             for text in ("operator-3", "operator-", "operator-3")]
    assert min(typed) < BUDGET_S, f"filtering held the GUI thread {typed}"
    assert page.model.page == 0  # a new filter starts at its first page
    assert page.model.total == len([i for i in data if "operator-3" in i.raw])
    page.text_filter.clear()
    assert page.model.row(0) == newest
    page.pager.previous.click()  # already on the first page: nothing moves
    assert page.model.page == 0 and not page.pager.previous.isEnabled()

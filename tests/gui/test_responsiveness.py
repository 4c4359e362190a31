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

from client_app.facade import SiteOperator
from gui.window import MainWindow
from tests.gui.conftest import open_page, settle

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

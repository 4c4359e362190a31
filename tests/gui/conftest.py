"""Fixtures of the desktop-app tests: real site folders, the real window offscreen.

Qt must run offscreen: the platform is chosen before any Qt module loads. Modal questions
go through ``gui.dialogs``; the :class:`Answers` fixture answers them and records what was
asked or shown, so flows run without a person and without waiting.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from client_app.custody.vault import open_or_create_vault
from client_app.facade import SiteOperator
from client_app.governance.studies import receive_plan
from client_app.store.folder import SiteDir, init_site_dir
from common.datasets import load_bundled, write_csv
from common.plan import bundled_plan_path
from gui import dialogs
from gui.app import default_policy
from gui.pages.base import Page
from gui.window import MainWindow
from tests.conftest import TEST_PASSPHRASE

STUDY_PASSPHRASE = "gui study passphrase"


@dataclass
class Answers:
    """How the operator answers the app's questions, and what the app showed."""

    confirm: bool = True
    file: Path | None = None
    save: Path | None = None
    questions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Answers:
    given = Answers()

    def confirm(_parent: object, _title: str, text: str) -> bool:
        given.questions.append(text)
        return given.confirm

    monkeypatch.setattr(dialogs, "confirm", confirm)
    monkeypatch.setattr(dialogs, "show_error",
                        lambda _p, message, title="": given.errors.append(message))
    monkeypatch.setattr(dialogs, "show_info",
                        lambda _p, message, title="": given.infos.append(message))
    monkeypatch.setattr(dialogs, "open_file", lambda _p, _t, _f: given.file)
    monkeypatch.setattr(dialogs, "save_file", lambda _p, _t, _f, _s: given.save)
    return given


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    """A fresh site folder (no kit: its own site operator) that received the bundled plan."""
    folder = init_site_dir(tmp_path / "site-1", name="site-1")
    open_or_create_vault(folder, TEST_PASSPHRASE)
    receive_plan(folder, bundled_plan_path("breast_cancer").read_text(encoding="utf-8"))
    return folder


@pytest.fixture
def operator(site: SiteDir) -> SiteOperator:
    return SiteOperator.open(site.root, passphrase=TEST_PASSPHRASE, actor="alice",
                             policy=default_policy())


@pytest.fixture
def window(qtbot, operator: SiteOperator, answers: Answers) -> Iterator[MainWindow]:
    win = MainWindow(operator)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    yield win
    win.close()


LOAD_MS = 30_000


def open_page(qtbot, window: MainWindow, number: int) -> Page:
    """Switch ``window`` to page ``number`` and wait until its newest load is shown."""
    page = window.pages[number]
    if window.sidebar.currentRow() == number:
        reload(qtbot, page)
        return page
    with qtbot.waitSignal(page.loaded, timeout=LOAD_MS):
        window.show_page(number)
    settle(qtbot, page)
    return page


def reload(qtbot, page: Page) -> None:
    """Reload ``page`` now (after any load in flight) and wait until it is shown."""
    settle(qtbot, page)
    with qtbot.waitSignal(page.loaded, timeout=LOAD_MS):
        page.refresh()


def settle(qtbot, page: Page) -> None:
    """Wait for ``page``'s running action, then for the reload it triggers."""
    if page.runner.busy:
        qtbot.waitUntil(lambda: not page.runner.busy, timeout=LOAD_MS)
    qtbot.waitUntil(lambda: not page.loader.busy and not page.reload_pending, timeout=LOAD_MS)


def messy_csv(folder: Path, *, rows: int = 60, missing_rows: tuple[int, ...] = (3, 7)) -> Path:
    """A breast-cancer CSV with an empty feature cell in ``missing_rows`` (file lines)."""
    path = folder / "admissions.csv"
    write_csv(path, load_bundled("breast_cancer"), np.arange(rows))
    lines = path.read_text(encoding="utf-8").splitlines()
    for number in missing_rows:
        cells = lines[number].split(",")
        cells[2] = ""
        lines[number] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class StudySite:
    """A site that took part in a finished in-process study and keeps its global model."""

    site: SiteDir
    plan_hash: str
    passphrase: str


@pytest.fixture(scope="session")
def study_site(tmp_path_factory: pytest.TempPathFactory) -> StudySite:
    """Run one plaintext round of the bundled study with two real in-process site agents."""
    from client_app.agent.site_agent import SiteAgent
    from client_app.custody.vault import unlock_vault
    from common.plan import load_plan, override
    from server.coordinator import run_study
    from tessera import local_federation
    from tessera.inprocess import InProcessGrid

    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1, he_enabled=False)
    fed = local_federation.build(tmp_path_factory.mktemp("gui-study") / "work", plan, sites=2,
                                 ceilings={}, passphrase=STUDY_PASSPHRASE)
    agents = [SiteAgent(unlock_vault(s, STUDY_PASSPHRASE)) for s in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="1", expected_sites=2, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    return StudySite(site=fed.sites[0], plan_hash=fed.plan_hash, passphrase=STUDY_PASSPHRASE)


@pytest.fixture
def study_window(qtbot, study_site: StudySite, answers: Answers) -> Iterator[MainWindow]:
    operator = SiteOperator.open(study_site.site.root, passphrase=study_site.passphrase,
                                 actor="alice", policy=default_policy())
    win = MainWindow(operator)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    yield win
    win.close()

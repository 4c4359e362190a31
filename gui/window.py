"""The main window: a sidebar of pages, the page stack, keyboard shortcuts, the status bar."""

from __future__ import annotations

from PySide6.QtCore import QThreadPool
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QStackedWidget,
    QWidget,
)

from client_app.facade import SiteOperator
from gui.pages.audit import AuditPage
from gui.pages.base import Page
from gui.pages.budget import BudgetPage
from gui.pages.consent import ConsentPage
from gui.pages.datasets import DatasetsPage
from gui.pages.evaluation import EvaluationPage
from gui.pages.overview import OverviewPage
from gui.pages.studies import StudiesPage

PAGES: tuple[type[Page], ...] = (OverviewPage, DatasetsPage, StudiesPage, ConsentPage,
                                 BudgetPage, EvaluationPage, AuditPage)


class MainWindow(QMainWindow):
    """One site, seven pages; Ctrl+1..7 switch pages."""

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.operator = operator
        self.setWindowTitle(f"Tessera site - {operator.site.name}")
        self.sidebar = QListWidget()
        self.sidebar.setAccessibleName("Pages")
        self.stack = QStackedWidget()
        self.pages: list[Page] = []
        for number, page_type in enumerate(PAGES, start=1):
            page = page_type(operator, self)
            self.pages.append(page)
            self.stack.addWidget(page)
            page.changed.connect(lambda what: self.statusBar().showMessage(what, 10_000))
            self.sidebar.addItem(f"{page.title}")
            self.sidebar.item(number - 1).setToolTip(f"Ctrl+{number}")
            shortcut = QShortcut(QKeySequence(f"Ctrl+{number}"), self)
            shortcut.activated.connect(lambda n=number - 1: self.show_page(n))
        self.sidebar.setFixedWidth(self.sidebar.sizeHintForColumn(0) + 36)
        self.sidebar.currentRowChanged.connect(self._page_selected)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.identity = QLabel(f"Site {operator.site.name} - {operator.actor} as "
                               f"{operator.role.value} ({operator.identity})")
        self.statusBar().addPermanentWidget(self.identity)
        self.sidebar.setCurrentRow(0)

    def page(self, page_type: type[Page]) -> Page:
        """The page of that class."""
        return next(p for p in self.pages if isinstance(p, page_type))

    @property
    def current(self) -> Page:
        return self.pages[self.stack.currentIndex()]

    def show_page(self, number: int) -> Page:
        """Switch to page ``number`` (0-based), refreshing it."""
        self.sidebar.setCurrentRow(number)
        self.sidebar.setFocus()
        return self.pages[number]

    def _page_selected(self, number: int) -> None:
        if number < 0:
            return
        self.stack.setCurrentIndex(number)
        self.pages[number].refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        for page in self.pages:
            page.runner.cancel()
        QThreadPool.globalInstance().waitForDone(30_000)
        super().closeEvent(event)

"""The main window: navigation with icons, the page stack, keyboard shortcuts, notifications.

Ctrl+1..8 switch pages; attention items and notifications open the page that resolves them.
The dashboard reloads every :data:`DASHBOARD_REFRESH_MS` in the background, so notifications
(a new study request, a refused round, a budget past 80%) arrive while the app is open.
"""

from __future__ import annotations

from PySide6.QtCore import QThreadPool, QTimer
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import Notice, SiteOperator
from gui.notify import Banner, Notifier
from gui.pages.audit import AuditPage
from gui.pages.base import Page
from gui.pages.budget import BudgetPage
from gui.pages.consent import ConsentPage
from gui.pages.dashboard import DashboardPage
from gui.pages.datasets import DatasetsPage
from gui.pages.drift import DriftPage
from gui.pages.evaluation import EvaluationPage
from gui.pages.studies import StudiesPage
from gui.text import tr

PAGES: tuple[type[Page], ...] = (DashboardPage, DatasetsPage, StudiesPage, ConsentPage,
                                 BudgetPage, EvaluationPage, AuditPage, DriftPage)
DASHBOARD_REFRESH_MS = 15_000


class MainWindow(QMainWindow):
    """One site, eight pages; Ctrl+1..8 switch pages."""

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.operator = operator
        self.setWindowTitle(tr("Tessera site - {name}").format(name=operator.site.name))
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_DriveNetIcon)
        self.setWindowIcon(icon)
        self.sidebar = QListWidget()
        self.sidebar.setAccessibleName(tr("Pages"))
        self.stack = QStackedWidget()
        self.pages: list[Page] = []
        for number, page_type in enumerate(PAGES, start=1):
            page = page_type(operator, self)
            self.pages.append(page)
            self.stack.addWidget(page)
            page.changed.connect(lambda what: self.statusBar().showMessage(what, 10_000))
            pixmap = getattr(QStyle.StandardPixmap, page.icon)
            item = QListWidgetItem(self.style().standardIcon(pixmap), tr(page.title))
            item.setToolTip(tr("Ctrl+{number}").format(number=number))
            self.sidebar.addItem(item)
            shortcut = QShortcut(QKeySequence(f"Ctrl+{number}"), self)
            shortcut.activated.connect(lambda n=number - 1: self.show_page(n))
        self.sidebar.setFixedWidth(self.sidebar.sizeHintForColumn(0) + 36)
        self.sidebar.currentRowChanged.connect(self._page_selected)
        self.banner = Banner()
        self.notifier = Notifier(self.banner, icon, self)
        self.notifier.open_page.connect(self.open_page)
        self.dashboard = self.page(DashboardPage)
        assert isinstance(self.dashboard, DashboardPage)
        self.dashboard.notice.connect(self.notify)
        self.dashboard.open_requested.connect(self.open_page)
        for page in self.pages:
            if page is not self.dashboard:
                page.changed.connect(lambda _what: self.dashboard.refresh())
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.banner)
        right.addWidget(self.stack, 1)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self.sidebar)
        layout.addLayout(right, 1)
        self.setCentralWidget(central)
        self.identity = QLabel(tr("Site {site} - {actor} as {role} ({identity})").format(
            site=operator.site.name, actor=operator.actor, role=operator.role.value,
            identity=operator.identity))
        self.statusBar().addPermanentWidget(self.identity)
        self.timer = QTimer(self)
        self.timer.setInterval(DASHBOARD_REFRESH_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.sidebar.setCurrentRow(0)

    def page(self, page_type: type[Page]) -> Page:
        """The page of that class."""
        return next(p for p in self.pages if isinstance(p, page_type))

    @property
    def current(self) -> Page:
        return self.pages[self.stack.currentIndex()]

    def show_page(self, number: int) -> Page:
        """Switch to page ``number`` (0-based); it reloads in the background."""
        self.sidebar.setCurrentRow(number)
        self.sidebar.setFocus()
        return self.pages[number]

    def open_page(self, key: str, target: str = "") -> Page:
        """Open the page named ``key`` (an attention item's or a notice's), at ``target``."""
        number = next((i for i, p in enumerate(self.pages) if p.key == key), 0)
        page = self.show_page(number)
        if target:
            page.select_target(target)
        return page

    def notify(self, notice: Notice) -> None:
        self.notifier.notify(notice)

    def _tick(self) -> None:
        if self.current is not self.dashboard:
            self.dashboard.refresh()

    def _page_selected(self, number: int) -> None:
        if number < 0:
            return
        self.stack.setCurrentIndex(number)
        self.pages[number].refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.timer.stop()
        for page in self.pages:
            page.runner.cancel()
            page.loader.cancel()
        QThreadPool.globalInstance().waitForDone(30_000)
        super().closeEvent(event)

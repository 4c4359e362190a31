"""What every page has: the operator facade, background loading, actions, error display.

A page never reads the site on the GUI thread: :meth:`Page.refresh` runs the page's
:meth:`Page.fetch` (facade calls only, no widgets) in a worker and hands the result to
:meth:`Page.show_data` on the GUI thread, then emits ``loaded``. Actions that change the site
run the same way through :meth:`Page.act`. A refresh asked for while one is loading runs
once that one is shown, so the page always ends up showing the newest state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from client_app.facade import SiteOperator
from common.errors import ErrorCode
from gui import dialogs
from gui.text import noop, tr
from gui.workers import TaskRunner


class Page(QWidget):
    """A page of the main window; ``changed(what)`` says that an action changed the site."""

    title = noop("Page")
    #: The name other pages and attention items use to open this page.
    key = "page"
    #: A QStyle standard icon name for the navigation.
    icon = "SP_FileIcon"
    changed = Signal(str)
    loaded = Signal()

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.operator = operator
        self.runner = TaskRunner(self)
        self.loader = TaskRunner(self)
        self._again = False
        self.setAccessibleName(tr(self.title))

    # -- loading ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload what the page shows, in the background (errors shown, never raised)."""
        if self.loader.busy:
            self._again = True
            return
        self.loader.start("load", lambda _w: self.fetch(), on_done=self._deliver,
                          on_error=self._load_failed)

    @property
    def reload_pending(self) -> bool:
        """Whether another load follows the one in flight."""
        return self._again

    def fetch(self) -> Any:
        """Read the site through the facade (worker thread: no widgets here)."""
        return None

    def select_target(self, target: str) -> None:
        """Show ``target`` (a row an attention item or notice names) once the page loads;
        pages without rows to pick ignore it."""

    def show_data(self, data: Any) -> None:
        """Fill the widgets with what :meth:`fetch` returned (GUI thread)."""

    def _deliver(self, data: Any) -> None:
        try:
            self.show_data(data)
        finally:
            self._loaded()

    def _load_failed(self, code: str, message: str) -> None:
        self.task_failed(code, message)
        self._loaded()

    def _loaded(self) -> None:
        self.loaded.emit()
        if self._again:
            self._again = False
            self.refresh()

    # -- actions ----------------------------------------------------------------------------

    def act(self, name: str, action: Callable[[], Any], *,
            done: Callable[[Any], None] | None = None, announce: str | None = None) -> None:
        """Run an action that changes the site in the background, then refresh the page."""

        def finished(result: Any) -> None:
            if done is not None:
                done(result)
            self.refresh()
            if announce:
                self.changed.emit(announce)

        self.runner.start(name, lambda _w: action(), on_done=finished,
                          on_error=self._action_failed)

    def _action_failed(self, code: str, message: str) -> None:
        self.task_failed(code, message)
        self.refresh()

    def show_error(self, message: str) -> None:
        dialogs.show_error(self, message, title=tr(self.title))

    def task_failed(self, code: str, message: str) -> None:
        """Default ``on_error`` of background tasks: cancellations are not errors."""
        if code != ErrorCode.CANCELLED.value:
            self.show_error(message)


def heading(text: str) -> QLabel:
    """A page or section heading (bold, the palette's text colour)."""
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    font.setPointSizeF(font.pointSizeF() * 1.25)
    label.setFont(font)
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
    label.setAccessibleName(text)
    return label

"""What every page has: the operator facade, a task runner, refresh, and error display."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from client_app.facade import SiteOperator
from common.errors import ErrorCode
from gui import dialogs
from gui.workers import TaskRunner


class Page(QWidget):
    """A page of the main window; ``changed(what)`` says that an action changed the site."""

    title = "Page"
    changed = Signal(str)

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.operator = operator
        self.runner = TaskRunner(self)

    def refresh(self) -> None:
        """Reload what the page shows, showing an error instead of raising."""
        try:
            self.load()
        except Exception as exc:  # the GUI boundary: a message, never a traceback
            self.show_error(dialogs.error_text(exc))

    def load(self) -> None:
        """Read the site and fill the widgets (pages override)."""

    def show_error(self, message: str) -> None:
        dialogs.show_error(self, message, title=self.title)

    def task_failed(self, code: str, message: str) -> None:
        """Default ``on_error`` of background tasks: cancellations are not errors."""
        if code != ErrorCode.CANCELLED.value:
            self.show_error(message)

    def attempt(self, action: Callable[[], object]) -> bool:
        """Run a quick action on the GUI thread; show its error and return False if it fails."""
        try:
            action()
        except Exception as exc:  # the GUI boundary: a message, never a traceback
            self.show_error(dialogs.error_text(exc))
            return False
        return True


def heading(text: str) -> QLabel:
    """A page or section heading (bold, the palette's text colour)."""
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    font.setPointSizeF(font.pointSizeF() * 1.25)
    label.setFont(font)
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
    return label

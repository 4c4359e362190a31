"""Desktop notifications: the system tray's balloon where there is one, else a banner in the
window. Either way the notice is kept in :attr:`Notifier.shown` and clicking it opens the
page it names."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QIcon, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSystemTrayIcon, QWidget

from client_app.facade import Notice
from gui.text import tr

BANNER_MS = 15_000


class Banner(QWidget):
    """The in-app notification: one line and an Open button, until dismissed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setAccessibleName(tr("Notification"))
        self.open_button = QPushButton(tr("Open"))
        self.close_button = QPushButton(tr("Dismiss"))
        self.close_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.open_button)
        layout.addWidget(self.close_button)
        self.setAutoFillBackground(True)
        self.setBackgroundRole(QPalette.ColorRole.ToolTipBase)
        self.setForegroundRole(QPalette.ColorRole.ToolTipText)
        self.hide()


def notice_target(notice: Notice) -> str:
    """The row a notice is about: the part after ``study:`` or ``budget:`` in its key."""
    kind, _, rest = notice.key.partition(":")
    return rest if kind in ("study", "budget") else ""


class Notifier(QObject):
    """Shows notices; ``open_page(page, target)`` when the operator clicks one (the target
    is the study's plan hash or the dataset a notice is about, else empty)."""

    open_page = Signal(str, str)

    def __init__(self, banner: Banner, icon: QIcon, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.banner = banner
        self.shown: list[Notice] = []
        self._last: Notice | None = None
        self.tray: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(icon, self)
            self.tray.setToolTip(tr("Tessera site"))
            self.tray.messageClicked.connect(self._clicked)
            self.tray.show()
        banner.open_button.clicked.connect(self._clicked)

    @property
    def uses_tray(self) -> bool:
        return self.tray is not None and self.tray.supportsMessages()

    def notify(self, notice: Notice) -> None:
        self.shown.append(notice)
        self._last = notice
        if self.uses_tray:
            assert self.tray is not None
            self.tray.showMessage(notice.title, notice.text,
                                  QSystemTrayIcon.MessageIcon.Information, BANNER_MS)
        self.banner.text.setText(f"<b>{notice.title}</b>: {notice.text}")
        self.banner.show()

    def _clicked(self) -> None:
        if self._last is not None:
            self.open_page.emit(self._last.page, notice_target(self._last))
        self.banner.hide()

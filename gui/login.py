"""The start-up dialog: who operates the site, and the site passphrase that unlocks it.

A wrong passphrase keeps the dialog open with a message and an empty field; the passphrase
is never logged or shown.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import SiteOperator
from common.errors import ErrorCode, TesseraError
from gui.dialogs import error_text
from gui.text import tr

#: Opens the site: (operator name, passphrase) -> the unlocked site, or raises.
Unlock = Callable[[str, str], SiteOperator]


class LoginDialog(QDialog):
    """Ask for the operator's name and the site passphrase until the site opens."""

    def __init__(self, site_name: str, unlock: Unlock, *, actor: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(tr("Open site {site_name}").format(site_name=site_name))
        self._unlock = unlock
        self.operator: SiteOperator | None = None
        self.name_edit = QLineEdit(actor)
        self.name_edit.setAccessibleName(tr("Operator name"))
        self.passphrase_edit = QLineEdit()
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName(tr("Site passphrase"))
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAccessibleName(tr("Message"))
        form = QFormLayout()
        name_label = QLabel(tr("&Operator name:"))
        name_label.setBuddy(self.name_edit)
        pass_label = QLabel(tr("Site &passphrase:"))
        pass_label.setBuddy(self.passphrase_edit)
        form.addRow(name_label, self.name_edit)
        form.addRow(pass_label, self.passphrase_edit)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText(tr("&Unlock"))
        self.unlock_button = ok
        self.buttons.accepted.connect(self._try_unlock)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(tr("Site <b>{site_name}</b> is locked. Enter its "
                                   "passphrase.").format(site_name=site_name)))
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        (self.passphrase_edit if actor else self.name_edit).setFocus()

    def _try_unlock(self) -> None:
        name = self.name_edit.text().strip()
        if not name:
            self.message.setText(tr("Enter your name: it is recorded with every decision."))
            self.name_edit.setFocus()
            return
        try:
            self.operator = self._unlock(name, self.passphrase_edit.text())
        except TesseraError as err:
            wrong = err.code == ErrorCode.WRONG_PASSPHRASE
            self.message.setText(tr("Wrong passphrase; try again.") if wrong else err.message)
            self.passphrase_edit.clear()
            self.passphrase_edit.setFocus()
            return
        except Exception as exc:  # the GUI boundary
            self.message.setText(error_text(exc))
            return
        self.passphrase_edit.clear()
        self.accept()

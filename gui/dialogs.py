"""Every modal question the app asks: errors, confirmations, file choices.

Pages never build message boxes themselves; they call these functions, so that errors always
read the same way (a message, never a traceback) and tests can answer the questions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from common.errors import TesseraError
from gui.text import noop, tr

log = logging.getLogger(__name__)
INTERNAL_ERROR = noop(
    "internal error: the action failed unexpectedly; see the application log")


def error_text(exc: BaseException) -> str:
    """What the operator reads for ``exc``: a TesseraError's message, else a generic line.

    Unexpected exceptions are logged by type only: their text may quote data.
    """
    if isinstance(exc, TesseraError):
        return exc.message
    log.error("internal error: %s", type(exc).__name__)
    return tr(INTERNAL_ERROR)


def show_error(parent: QWidget | None, message: str, *, title: str = "") -> None:
    """A modal error message (titled "Tessera" unless ``title`` is given)."""
    QMessageBox.warning(parent, title or tr("Tessera"), message)


def show_info(parent: QWidget | None, message: str, *, title: str = "") -> None:
    """A modal information message (titled "Tessera" unless ``title`` is given)."""
    QMessageBox.information(parent, title or tr("Tessera"), message)


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    """Ask a yes/no question; "No" is the default answer."""
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def open_file(parent: QWidget | None, title: str, filters: str) -> Path | None:
    """Ask for an existing file; None if the operator cancels."""
    name, _ = QFileDialog.getOpenFileName(parent, title, "", filters)
    return Path(name) if name else None


def save_file(parent: QWidget | None, title: str, filters: str, suggested: str) -> Path | None:
    """Ask where to save a new file; None if the operator cancels."""
    name, _ = QFileDialog.getSaveFileName(parent, title, suggested, filters)
    return Path(name) if name else None

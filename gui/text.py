"""The app's user-visible strings go through Qt's translation system (context "Tessera")."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication

CONTEXT = "Tessera"


def tr(text: str) -> str:
    """``text`` in the installed translation, or as written."""
    return QCoreApplication.translate(CONTEXT, text)

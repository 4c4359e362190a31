"""The app's user-visible strings go through Qt's translation system (context "Tessera").

``tr("...")`` translates where a string is shown; ``noop("...")`` marks a string kept in a
constant or class attribute (a page title, a combo-box entry) for the translation catalogue,
like Qt's ``QT_TRANSLATE_NOOP``, and is translated with ``tr`` where it is shown.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication

CONTEXT = "Tessera"


def tr(text: str) -> str:
    """``text`` in the installed translation, or as written."""
    return QCoreApplication.translate(CONTEXT, text)


def noop(text: str) -> str:
    """``text`` unchanged: marked for translation, translated later with :func:`tr`."""
    return text

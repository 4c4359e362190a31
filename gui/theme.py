"""The app's light and dark palettes and status colours, chosen for WCAG AA contrast.

The app draws with the Fusion style and one of two palettes: :data:`LIGHT` or :data:`DARK`,
following the system's colour scheme unless ``TESSERA_THEME`` says ``light`` or ``dark``.
Every text colour meets WCAG 2.1 AA (a contrast ratio of at least 4.5:1) on each background
it is drawn on; :data:`TEXT_PAIRS` names those pairs and :func:`contrast_ratio` measures them.
Status colours (attention levels, the audit verdict, the plots' accent and warning lines) are
part of the theme, so they are checked the same way on the window and on list backgrounds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEME_ENV_VAR = "TESSERA_THEME"
#: WCAG 2.1 AA: the least contrast ratio for normal-size text.
AA_TEXT = 4.5

Role = QPalette.ColorRole


@dataclass(frozen=True)
class Theme:
    """One palette: a colour per Qt role (``#rrggbb``) and the app's status colours."""

    name: str
    roles: dict[str, str]
    #: Text colours of the statuses the app shows: critical, warning, info, ok.
    status: dict[str, str]
    #: Colours of the plots' lines: the data and the ceiling.
    accent: str
    warn: str

    def palette(self) -> QPalette:
        """The Qt palette: every role in every colour group, placeholder and disabled text
        included."""
        palette = QPalette()
        for role, colour in self.roles.items():
            palette.setColor(getattr(Role, role), QColor(colour))
        disabled = QColor(self.roles["PlaceholderText"])
        for dimmed in (Role.WindowText, Role.Text, Role.ButtonText):
            palette.setColor(QPalette.ColorGroup.Disabled, dimmed, disabled)
        return palette


LIGHT = Theme(
    name="light",
    roles={
        "Window": "#f3f3f3", "WindowText": "#1a1a1a", "Base": "#ffffff",
        "AlternateBase": "#eef1f5", "Text": "#1a1a1a", "Button": "#e4e4e4",
        "ButtonText": "#1a1a1a", "ToolTipBase": "#fff8d6", "ToolTipText": "#1a1a1a",
        "Highlight": "#1f5fa8", "HighlightedText": "#ffffff", "PlaceholderText": "#5f5f5f",
        "Link": "#0b57b0", "LinkVisited": "#6a3fa0", "BrightText": "#ffffff",
    },
    status={"critical": "#b00020", "warning": "#8a5300", "info": "#1f5fa8", "ok": "#1e6b2f"},
    accent="#1f5fa8",
    warn="#b00020",
)

DARK = Theme(
    name="dark",
    roles={
        "Window": "#202124", "WindowText": "#e8eaed", "Base": "#17181a",
        "AlternateBase": "#26282c", "Text": "#e8eaed", "Button": "#303236",
        "ButtonText": "#e8eaed", "ToolTipBase": "#3a3521", "ToolTipText": "#f1f1f1",
        "Highlight": "#8ab4f8", "HighlightedText": "#111111", "PlaceholderText": "#a4a7ab",
        "Link": "#8ab4f8", "LinkVisited": "#c58af9", "BrightText": "#000000",
    },
    status={"critical": "#ff8a80", "warning": "#fdd663", "info": "#8ab4f8", "ok": "#81c995"},
    accent="#8ab4f8",
    warn="#ff8a80",
)

THEMES = {t.name: t for t in (LIGHT, DARK)}

#: (text role, background role) pairs the app draws text with.
TEXT_PAIRS = (
    ("WindowText", "Window"), ("Text", "Base"), ("Text", "AlternateBase"),
    ("ButtonText", "Button"), ("ToolTipText", "ToolTipBase"),
    ("HighlightedText", "Highlight"), ("PlaceholderText", "Base"),
    ("PlaceholderText", "Window"), ("Link", "Base"), ("Link", "Window"),
)
#: The backgrounds status text is drawn on (labels on the window, items in lists).
STATUS_BACKGROUNDS = ("Window", "Base", "AlternateBase", "ToolTipBase")


def _channel(value: int) -> float:
    c = value / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    """WCAG 2.1 relative luminance of ``#rrggbb``."""
    q = QColor(colour)
    if not q.isValid():
        raise ValueError(f"colour: {colour!r} is not a colour")
    return 0.2126 * _channel(q.red()) + 0.7152 * _channel(q.green()) + 0.0722 * _channel(q.blue())


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.1 contrast ratio of two colours, from 1 (none) to 21 (black on white)."""
    a, b = relative_luminance(foreground), relative_luminance(background)
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)


def system_prefers_dark() -> bool:
    """Whether the desktop asks for a dark colour scheme (Qt 6.5+; light when unknown)."""
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def chosen_theme() -> Theme:
    """``$TESSERA_THEME`` (light or dark) if set, else the system's scheme."""
    wanted = os.environ.get(THEME_ENV_VAR, "").strip().lower()
    if wanted in THEMES:
        return THEMES[wanted]
    return DARK if system_prefers_dark() else LIGHT


def current_theme() -> Theme:
    """The theme the running application's palette is (by its window colour)."""
    window = QGuiApplication.palette().color(Role.Window).name()
    return DARK if window == DARK.roles["Window"] else LIGHT


def apply_theme(app: QApplication, theme: Theme | None = None) -> Theme:
    """Draw ``app`` with the Fusion style and ``theme`` (default: :func:`chosen_theme`)."""
    chosen = theme or chosen_theme()
    app.setStyle("Fusion")
    app.setPalette(chosen.palette())
    return chosen


def status_colour(level: str) -> QColor:
    """The current theme's text colour for a status (``critical``, ``warning``, ``info``,
    ``ok``)."""
    return QColor(current_theme().status[level])

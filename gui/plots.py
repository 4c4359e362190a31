"""Matplotlib figures inside the app, styled from the window palette (light or dark).

A dark window gets matplotlib's dark style, a light one the default; the figure's background
and text follow the application palette's window and text colours, and the lines take the
theme's accent and warning colours (:mod:`gui.theme`, checked for contrast).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from matplotlib import dates as mdates
from matplotlib import style
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QEvent
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QWidget

from gui.text import tr
from gui.theme import DARK, LIGHT


def is_dark(palette: QPalette) -> bool:
    """Whether the palette's window colour is dark."""
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


class PlotCanvas(FigureCanvasQTAgg):
    """A figure with one set of axes, redrawn by the page's ``plot_*`` calls."""

    def __init__(self, parent: QWidget | None = None, *, width: float = 5.0,
                 height: float = 3.2) -> None:
        self._dark = False
        super().__init__(Figure(figsize=(width, height), layout="constrained"))
        if parent is not None:
            self.setParent(parent)
        self.setMinimumSize(320, 220)
        self.axes = self.figure.add_subplot()
        self._redraw: Callable[[], None] | None = None

    def changeEvent(self, event: QEvent) -> None:
        """Redraw in the new colours when the system switches between light and dark."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.ApplicationPaletteChange and self._redraw is not None:
            self._redraw()

    @staticmethod
    def _palette() -> QPalette:
        """The application's palette (matplotlib gives its canvas widget a white one)."""
        return QGuiApplication.palette()

    def _fresh_axes(self) -> None:
        """Clear the figure and take the current palette's style."""
        self._dark = is_dark(self._palette())
        self.figure.clear()
        with style.context("dark_background" if self._dark else "default"):
            self.axes = self.figure.add_subplot()
        window = self._palette().color(QPalette.ColorRole.Window)
        self.figure.set_facecolor(window.name())
        self.axes.set_facecolor(window.name())
        text = self._palette().color(QPalette.ColorRole.WindowText).name()
        for spine in self.axes.spines.values():
            spine.set_color(text)
        self.axes.tick_params(colors=text)
        self.axes.xaxis.label.set_color(text)
        self.axes.yaxis.label.set_color(text)
        self.axes.title.set_color(text)

    @property
    def _accent(self) -> str:
        return (DARK if self._dark else LIGHT).accent

    @property
    def _warn(self) -> str:
        return (DARK if self._dark else LIGHT).warn

    def _legend(self) -> None:
        legend = self.axes.legend(loc="lower right", fontsize="small")
        text = self._palette().color(QPalette.ColorRole.WindowText).name()
        for item in legend.get_texts():
            item.set_color(text)
        legend.get_frame().set_facecolor(self._palette().color(QPalette.ColorRole.Base).name())

    def plot_budget(self, curves: Sequence[tuple[str, Sequence[tuple[datetime, float]]]], *,
                    ceiling: float) -> None:
        """Cumulative epsilon over time, one step line per dataset, and the ceiling."""
        self._redraw = lambda: self.plot_budget(curves, ceiling=ceiling)
        self._fresh_axes()
        ax = self.axes
        firsts: list[datetime] = []
        lasts: list[datetime] = []
        for name, curve in curves:
            if not curve:
                continue
            # Start from nothing spent at the first run, then one step per run.
            times = [curve[0][0], *(at for at, _ in curve)]
            values = [0.0, *(eps for _, eps in curve)]
            ax.step(mdates.date2num(times), values, where="post", marker="o", markersize=4,
                    label=name)
            firsts.append(times[0])
            lasts.append(times[-1])
        ax.axhline(ceiling, color=self._warn, linestyle="--",
                   label=tr("ceiling {ceiling:g}").format(ceiling=ceiling))
        spent = max((eps for _, c in curves for _, eps in c), default=0.0)
        ax.set_ylim(0, max(ceiling, spent) * 1.15)
        if firsts:
            start, end = min(firsts), max(lasts)
            span = max(end - start, timedelta(minutes=10))
            ax.set_xlim(mdates.date2num(start - span * 0.05),
                        mdates.date2num(start + span * 1.05))
        local = datetime.now().astimezone().tzinfo
        locator = mdates.AutoDateLocator(tz=local)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=local))
        ax.set_xlabel(tr("time"))
        ax.set_ylabel(tr("cumulative epsilon"))
        ax.set_title(tr("Privacy budget spent"))
        self._legend()
        self.draw_idle()

    def plot_roc(self, fpr: Sequence[float], tpr: Sequence[float], *, auc: float) -> None:
        """An ROC curve with the chance diagonal."""
        self._redraw = lambda: self.plot_roc(fpr, tpr, auc=auc)
        self._fresh_axes()
        ax = self.axes
        ax.plot(fpr, tpr, color=self._accent, linewidth=2,
                label=tr("model (AUC {auc:.3f})").format(auc=auc))
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label=tr("chance"))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(tr("false positive rate"))
        ax.set_ylabel(tr("true positive rate"))
        ax.set_title(tr("ROC curve (local test split)"))
        ax.set_aspect("equal")
        self._legend()
        self.draw_idle()

    def show_message(self, text: str) -> None:
        """An empty plot saying why it is empty."""
        self._redraw = lambda: self.show_message(text)
        self._fresh_axes()
        self.axes.set_axis_off()
        colour = self._palette().color(QPalette.ColorRole.PlaceholderText).name()
        self.axes.text(0.5, 0.5, text, ha="center", va="center", color=colour,
                       transform=self.axes.transAxes)
        self.draw_idle()

"""Dashboard: what needs the operator's attention, the node, the budget, recent activity.

Attention items (a study waiting for review, a budget past 80% of the ceiling, refused
rounds, a stopped or disconnected node) open the page that resolves them: ``open_requested
(page key, target)``, which the main window follows. Each load is compared with the previous
one; what is new (a study request, a refused round, a budget crossing 80%) is emitted as
``notice`` for the window's desktop notifications.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import Dashboard, Notice, SiteOperator, notices
from gui import dialogs
from gui.access import enable, gate
from gui.models import display
from gui.pages.base import Page, heading
from gui.text import noop, tr
from gui.theme import status_colour
from gui.widgets import GaugeBar

_LEVEL_ICONS = {"critical": QStyle.StandardPixmap.SP_MessageBoxCritical,
                "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
                "info": QStyle.StandardPixmap.SP_MessageBoxInformation}
_NODE_WORDS = {"connected": noop("Connected to the coordinator"),
               "retrying": noop("Retrying: the coordinator cannot be reached"),
               "connecting": noop("Connecting to the coordinator"),
               "stopped": noop("Stopped")}


class DashboardPage(Page):
    title = noop("Dashboard")
    key = "dashboard"
    icon = "SP_ComputerIcon"
    open_requested = Signal(str, str)
    notice = Signal(object)

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.board: Dashboard | None = None
        self.items = QListWidget()
        self.items.setAccessibleName(tr("Needs your attention"))
        self.items.setWordWrap(True)
        self.items.itemActivated.connect(self._open_item)
        self.open_button = QPushButton(tr("&Open the page that resolves it"))
        self.open_button.clicked.connect(self._open_selected)
        self.ack_button = QPushButton(tr("&Mark refusals as seen"))
        gate(self.ack_button, operator, "gui dashboard.acknowledge",
             tooltip=tr("The dashboard stops listing the refusals you have looked at"))
        self.ack_button.clicked.connect(self.acknowledge)
        attention_box = QGroupBox(tr("Needs your attention"))
        box = QVBoxLayout(attention_box)
        box.addWidget(self.items, 1)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addStretch(1)
        row.addWidget(self.ack_button)
        box.addLayout(row)

        self.node_state = QLabel("-")
        self.node_state.setWordWrap(True)
        self.node_state.setAccessibleName(tr("Node state"))
        self.start_button = QPushButton(tr("&Start node"))
        gate(self.start_button, operator, "gui node.start",
             tooltip=tr("Start this site's agent and SuperNode in the background"))
        self.start_button.clicked.connect(self.start_node)
        self.stop_button = QPushButton(tr("S&top node"))
        gate(self.stop_button, operator, "gui node.stop", tooltip=tr("Stop the node"))
        self.stop_button.clicked.connect(self.stop_node)
        self.last_round = QLabel("-")
        self.last_round.setWordWrap(True)
        self.last_round.setAccessibleName(tr("Last round"))
        node_box = QGroupBox(tr("Node"))
        node = QVBoxLayout(node_box)
        node.addWidget(self.node_state)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        node.addLayout(buttons)
        node.addWidget(QLabel(tr("Last round:")))
        node.addWidget(self.last_round)

        self.budget_box = QGroupBox(tr("Privacy budget per dataset"))
        self.gauges_layout = QVBoxLayout(self.budget_box)
        self.gauges: list[GaugeBar] = []
        self.no_budget = QLabel(tr("No dataset registered yet."))
        self.gauges_layout.addWidget(self.no_budget)

        self.recent = QListWidget()
        self.recent.setAccessibleName(tr("What happened recently"))
        self.recent.setWordWrap(True)
        recent_box = QGroupBox(tr("What happened recently"))
        QVBoxLayout(recent_box).addWidget(self.recent)

        side = QVBoxLayout()
        side.addWidget(node_box)
        side.addWidget(self.budget_box)
        side.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(attention_box, 3)
        top.addLayout(side, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(heading(tr("Dashboard")))
        layout.addLayout(top, 3)
        layout.addWidget(recent_box, 2)
        self.runner.busy_changed.connect(lambda _b: self._update_buttons())
        self._update_buttons()

    def fetch(self) -> Dashboard:
        return self.operator.dashboard()

    def show_data(self, data: Dashboard) -> None:
        previous, self.board = self.board, data
        style = self.style()
        self.items.clear()
        for item in data.items:
            entry = QListWidgetItem(style.standardIcon(_LEVEL_ICONS[item.level]), item.text)
            entry.setForeground(status_colour(item.level))
            entry.setData(Qt.ItemDataRole.UserRole, (item.page, item.target or ""))
            entry.setToolTip(tr("Enter or double-click opens the {page} page").format(
                page=item.page))
            self.items.addItem(entry)
        if not data.items:
            self.items.addItem(QListWidgetItem(
                style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton),
                tr("Nothing needs your attention.")))
        else:
            self.items.setCurrentRow(0)
        words = tr(_NODE_WORDS.get(data.node_state, data.node_state))
        self.node_state.setText(f"<b>{words}</b><br>{data.node_text}")
        self.last_round.setText(data.last_round or tr("none yet"))
        for bar in self.gauges:
            bar.deleteLater()
        self.gauges = [GaugeBar(g) for g in data.gauges]
        for bar in self.gauges:
            self.gauges_layout.addWidget(bar)
        self.no_budget.setVisible(not self.gauges)
        self.recent.clear()
        for act in data.recent:
            line = QListWidgetItem(f"{display(act.at)}  {act.sentence}  ({act.actor})")
            line.setToolTip(act.raw)
            self.recent.addItem(line)
        self._update_buttons()
        for notice in notices(previous, data):
            self.notice.emit(notice)

    @property
    def attention(self) -> list[str]:
        """The attention items' texts, as shown."""
        return [] if self.board is None else [i.text for i in self.board.items]

    def _update_buttons(self) -> None:
        board = self.board
        running = board is not None and board.node_state != "stopped"
        idle = not self.runner.busy
        enable(self.start_button, board is not None and not running and idle)
        enable(self.stop_button, running and idle)
        enable(self.ack_button, board is not None and board.unseen_refusals > 0 and idle)
        self.open_button.setEnabled(board is not None and bool(board.items))

    def _open_item(self, entry: QListWidgetItem) -> None:
        target = entry.data(Qt.ItemDataRole.UserRole)
        if target:
            self.open_requested.emit(target[0], target[1])

    def _open_selected(self) -> None:
        entry = self.items.currentItem()
        if entry is not None:
            self._open_item(entry)

    def acknowledge(self) -> None:
        self.act("acknowledge", self.operator.acknowledge_refusals,
                 announce=tr("refusals marked as seen"))

    def start_node(self) -> None:
        self.act("start node", lambda: self.operator.start_node(),
                 announce=tr("node started"))

    def stop_node(self) -> None:
        if not dialogs.confirm(self, tr("Stop node"), tr(
                "Stop the site agent and the SuperNode? A study round in progress will miss "
                "this site.")):
            return
        self.act("stop node", self.operator.stop_node, announce=tr("node stopped"))


__all__ = ["DashboardPage", "Notice"]

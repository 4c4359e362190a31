"""Overview page: the site at a glance, and starting or stopping its node."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from client_app.facade import NodeStatus, SiteOperator
from gui import dialogs
from gui.access import enable, gate
from gui.models import Column, RowsModel, display
from gui.pages.base import Page, heading

RECENT_EVENTS = 12


def node_text(status: NodeStatus) -> str:
    """The node's state in one line."""
    if not status.running:
        return "stopped" + (f" (last error: {status.last_error})" if status.last_error else "")
    parts = [f"running (pid {status.pid})",
             "agent up" if status.agent_up else "agent starting",
             f"SuperLink {status.superlink} ({status.connection})" if status.superlink
             else "no SuperLink set"]
    return ", ".join(parts)


def _value_label() -> QLabel:
    label = QLabel("-")
    label.setWordWrap(True)
    return label


class OverviewPage(Page):
    title = "Overview"

    def __init__(self, operator: SiteOperator, parent: QWidget | None = None) -> None:
        super().__init__(operator, parent)
        self.fields: dict[str, QLabel] = {}
        site_box = QGroupBox("Site")
        site_form = QFormLayout(site_box)
        for key in ("site", "folder", "operator", "role"):
            self.fields[key] = _value_label()
            site_form.addRow(f"{key.capitalize()}:", self.fields[key])
        data_box = QGroupBox("Data, studies and privacy")
        data_form = QFormLayout(data_box)
        for key, title in (("datasets", "Datasets"), ("studies", "Approved studies"),
                           ("epsilon", "Epsilon spent"), ("consent", "Consent events")):
            self.fields[key] = _value_label()
            data_form.addRow(f"{title}:", self.fields[key])
        node_box = QGroupBox("Node (site agent and SuperNode)")
        node_form = QFormLayout(node_box)
        for key, title in (("node", "State"), ("study", "Current study"),
                           ("task", "Last task")):
            self.fields[key] = _value_label()
            node_form.addRow(f"{title}:", self.fields[key])
        self.start_button = QPushButton("&Start node")
        gate(self.start_button, operator, "gui node.start",
             tooltip="Start this site's agent and SuperNode in the background")
        self.start_button.clicked.connect(self.start_node)
        self.stop_button = QPushButton("S&top node")
        gate(self.stop_button, operator, "gui node.stop", tooltip="Stop the node")
        self.stop_button.clicked.connect(self.stop_node)
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        node_form.addRow(buttons)
        self.runner.busy_changed.connect(lambda _busy: self._update_buttons())

        self.events = RowsModel([
            Column("time", lambda e: e.at),
            Column("event", lambda e: e.kind),
            Column("plan hash", lambda e: e.plan_hash[:12] if e.plan_hash else None,
                   tooltip=lambda e: e.plan_hash or ""),
            Column("details", lambda e: ", ".join(f"{k}={v}" for k, v in
                                                  sorted(e.details.items()))),
        ], self)
        self.events_table = QTableView()
        self.events_table.setModel(self.events)
        self.events_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.events_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.events_table.setAccessibleName("Recent events")

        top = QHBoxLayout()
        top.addWidget(site_box, 1)
        top.addWidget(data_box, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Overview"))
        layout.addLayout(top)
        layout.addWidget(node_box)
        layout.addWidget(QLabel("Recent events:"))
        layout.addWidget(self.events_table, 1)
        self.status: NodeStatus | None = None

    def load(self) -> None:
        op = self.operator
        self.fields["site"].setText(op.site.name)
        self.fields["folder"].setText(str(op.site.root))
        self.fields["operator"].setText(op.actor)
        self.fields["role"].setText(f"{op.role.value} ({op.identity})")
        versions = op.dataset_versions()
        names = sorted({v.dataset for v in versions})
        self.fields["datasets"].setText(
            f"{len(names)} ({', '.join(names)}), {len(versions)} version(s)" if names
            else "none registered")
        titles = {p.plan_hash: p.study for p in op.received_plans()}
        approved = [f"{titles.get(h, 'plan')} {h[:12]}" for h in op.approved_hashes()]
        self.fields["studies"].setText(", ".join(approved) or "none")
        ceiling = op.ceiling()
        budgets = op.budgets()
        spent = max((b.spent for b in budgets), default=0.0)
        self.fields["epsilon"].setText(
            f"{spent:.3f} of the ceiling {ceiling:g} (highest of {len(budgets)} dataset(s))")
        self.fields["consent"].setText(str(len(op.consent_history())))
        self.status = op.node_status()
        self.fields["node"].setText(node_text(self.status))
        study = self.status.current_study
        self.fields["study"].setText(
            f"{study}, round {self.status.current_round}" if study else "none")
        self.fields["task"].setText(
            f"{self.status.last_task} at {display(self.status.last_task_at)}"
            if self.status.last_task else "none yet")
        self.events.set_rows(list(reversed(op.events()))[:RECENT_EVENTS])
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.status is not None and self.status.running
        enable(self.start_button, not running and not self.runner.busy)
        enable(self.stop_button, running and not self.runner.busy)

    def start_node(self) -> None:
        self.runner.start("start node", lambda _w: self.operator.start_node(),
                          on_done=lambda _r: self.refresh(), on_error=self._node_failed)

    def stop_node(self) -> None:
        if not dialogs.confirm(self, "Stop node", "Stop the site agent and the SuperNode? "
                               "A study round in progress will miss this site."):
            return
        self.runner.start("stop node", lambda _w: self.operator.stop_node(),
                          on_done=lambda _r: self.refresh(), on_error=self._node_failed)

    def _node_failed(self, code: str, message: str) -> None:
        self.task_failed(code, message)
        self.refresh()

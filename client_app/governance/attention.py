"""What needs the operator's attention, and what changed since the last look.

:func:`build_dashboard` is pure: from the node's state, the received plans, the budgets and
the site's recent activity it makes a :class:`Dashboard`: attention items (a study waiting
for review, a dataset past 80% of its ceiling, refused rounds the operator has not seen, a
node that is stopped or cannot reach the coordinator), each naming the page that resolves
it, plus the last round and a short "what happened recently" list. :func:`notices` compares
two dashboards and says what deserves a desktop notification: a new study request, a newly
refused round, a dataset whose budget just crossed 80% of the ceiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from client_app.governance.budget_view import ATTENTION_FRACTION, Gauge
from client_app.governance.narration import Activity, short_hash

Page = Literal["dashboard", "datasets", "studies", "consent", "budget", "evaluation", "audit"]
Level = Literal["critical", "warning", "info"]

#: Event kinds that are a refused round or task.
REFUSALS = frozenset({"task_refused", "budget_refusal", "study_refused"})
#: Event kinds that mark a round this site took part in.
ROUND_KINDS = frozenset({"update_sent", "stats_sent", "counts_sent"})
RECENT = 8


@dataclass(frozen=True)
class PendingStudy:
    study: str
    plan_hash: str


@dataclass(frozen=True)
class AttentionItem:
    """One thing to look at: what, how urgent, and the page (and row) that resolves it."""

    key: str
    level: Level
    text: str
    page: Page
    target: str | None = None


@dataclass(frozen=True)
class Dashboard:
    """The site at a glance."""

    site: str
    node_state: str
    node_text: str
    pending: tuple[PendingStudy, ...]
    gauges: tuple[Gauge, ...]
    refusals: tuple[Activity, ...]
    unseen_refusals: int
    refusal_total: int
    last_round: str | None
    recent: tuple[Activity, ...]
    items: tuple[AttentionItem, ...]
    approved: int


@dataclass(frozen=True)
class Notice:
    """A desktop notification: its title, its text and the page it opens."""

    key: str
    title: str
    text: str
    page: Page


def _node_item(state: str, approved: int) -> AttentionItem | None:
    if state == "retrying":
        return AttentionItem("node", "critical", "The node cannot reach the coordinator "
                             "(retrying): check the network or the SuperLink address",
                             "dashboard")
    if state == "stopped" and approved:
        return AttentionItem("node", "warning", "The node is stopped: start it to take part "
                             "in the approved studies' rounds", "dashboard")
    return None


def build_dashboard(*, site: str, node_state: str, node_text: str,
                    pending: Sequence[PendingStudy], gauges: Sequence[Gauge],
                    activity: Sequence[Activity], refusals_seen: int, approved: int,
                    ) -> Dashboard:
    """The dashboard of one site; ``activity`` is oldest first, ``refusals_seen`` how many
    refusals the operator already acknowledged."""
    refusals = tuple(a for a in activity if a.kind in REFUSALS)
    unseen = max(len(refusals) - refusals_seen, 0)
    items: list[AttentionItem] = []
    node = _node_item(node_state, approved)
    if node is not None:
        items.append(node)
    for study in pending:
        items.append(AttentionItem(f"study:{study.plan_hash}", "warning",
                                   f"Study {study.study} (plan {short_hash(study.plan_hash)}) "
                                   "is waiting for your review", "studies", study.plan_hash))
    for gauge in gauges:
        if gauge.needs_attention:
            level: Level = "critical" if gauge.remaining <= 0 else "warning"
            items.append(AttentionItem(f"budget:{gauge.dataset}", level,
                                       f"{gauge.dataset} has {gauge.text()}", "budget",
                                       gauge.dataset))
    if unseen:
        newest = refusals[-1]
        items.append(AttentionItem(f"refusals:{len(refusals)}", "warning",
                                   f"{unseen} refused round(s) or task(s) since you last "
                                   f"looked; latest: {newest.sentence}", "audit", newest.kind))
    rounds = [a for a in activity if a.kind in ROUND_KINDS]
    last_round = rounds[-1].sentence if rounds else None
    return Dashboard(site=site, node_state=node_state, node_text=node_text,
                     pending=tuple(pending), gauges=tuple(gauges), refusals=refusals[-RECENT:],
                     unseen_refusals=unseen, refusal_total=len(refusals), last_round=last_round,
                     recent=tuple(reversed(activity[-RECENT:])), items=tuple(items),
                     approved=approved)


def notices(previous: Dashboard | None, current: Dashboard) -> list[Notice]:
    """What is new in ``current`` since ``previous`` (nothing on the first look)."""
    if previous is None:
        return []
    out: list[Notice] = []
    known = {p.plan_hash for p in previous.pending}
    for study in current.pending:
        if study.plan_hash not in known:
            out.append(Notice(f"study:{study.plan_hash}", "New study request",
                              f"Study {study.study} is waiting for your review.", "studies"))
    if current.refusals and current.refusal_total > previous.refusal_total:
        out.append(Notice(f"refusal:{current.refusal_total}", "Round refused",
                          current.refusals[-1].sentence, "audit"))
    before = {g.dataset: g.fraction for g in previous.gauges}
    for gauge in current.gauges:
        if gauge.fraction >= ATTENTION_FRACTION > before.get(gauge.dataset, 0.0):
            out.append(Notice(f"budget:{gauge.dataset}", "Privacy budget above 80%",
                              f"{gauge.dataset} has {gauge.text()}.", "budget"))
    return out

"""What needs attention, and what deserves a notification."""

from __future__ import annotations

from datetime import UTC, datetime

from client_app.governance.attention import Dashboard, PendingStudy, build_dashboard, notices
from client_app.governance.budget_view import Gauge
from client_app.governance.narration import activity

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _gauge(spent: float, ceiling: float = 10.0) -> Gauge:
    return Gauge(dataset="bc", spent=spent, ceiling=ceiling, remaining=max(ceiling - spent, 0),
                 releases=3, delta=1e-5)


def _board(*, pending: tuple[str, ...] = (), spent: float = 1.0, refusals: int = 0,
           seen: int = 0, state: str = "connected", approved: int = 1) -> Dashboard:
    events = [activity(at=AT, kind="update_sent", details={"round": 1}, plan_hash=None,
                       studies={})]
    events += [activity(at=AT, kind="budget_refusal", details={"round": 2 + n, "projected": 11.0,
                                                               "ceiling": 10.0},
                        plan_hash=None, studies={}) for n in range(refusals)]
    return build_dashboard(site="s", node_state=state, node_text="", approved=approved,
                           pending=[PendingStudy("bc", h * 64) for h in pending],
                           gauges=[_gauge(spent)], activity=events, refusals_seen=seen)


def test_each_kind_of_attention_item_names_the_page_that_resolves_it() -> None:
    board = _board(pending=("a",), spent=8.5, refusals=1, state="retrying")
    assert [(i.key.split(":")[0], i.page) for i in board.items] == [
        ("node", "dashboard"), ("study", "studies"), ("budget", "budget"),
        ("refusals", "audit")]
    assert "85% used" in board.items[2].text and "15% left" in board.items[2].text
    assert board.last_round == "Sent an encrypted update for round 1 of a study"


def test_items_resolve_when_their_cause_is_gone() -> None:
    assert _board(pending=(), spent=7.9, refusals=2, seen=2).items == ()
    assert [i.key for i in _board(state="stopped").items] == ["node"]
    assert _board(state="stopped", approved=0).items == ()


def test_notices_for_a_new_request_a_new_refusal_and_crossing_80_percent() -> None:
    before = _board(spent=7.0)
    after = _board(pending=("b",), spent=8.0, refusals=1)
    assert notices(None, after) == []
    assert [n.title for n in notices(before, after)] == [
        "New study request", "Round refused", "Privacy budget above 80%"]
    assert notices(after, _board(pending=("b",), spent=9.0, refusals=1)) == []


def test_a_gauge_states_spent_and_remaining_both_ways() -> None:
    assert _gauge(3.0).text() == ("spent epsilon 3.000 of the ceiling 10 (30% used); 7.000 left "
                                  "(70% left)")
    assert _gauge(12.0).remaining == 0 and "0% left" in _gauge(12.0).text()

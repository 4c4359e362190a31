"""What the site agent did last: task, study, round and outcome, kept in the site store.

The agent records its state after every task (:func:`record_agent_state`, setting
``agent_state``); the node controller and the desktop app read it to show the current study,
round and last error. No patient data: kinds, names, counts and reasons only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore

log = logging.getLogger(__name__)

AGENT_STATE_KEY = "agent_state"


@dataclass(frozen=True)
class AgentState:
    """What the site agent did last (no patient data: kinds, names, counts, reasons)."""

    kind: str
    study: str | None
    plan_hash: str
    round: int
    at: datetime
    ok: bool
    error_code: str
    reason: str

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": self.at.isoformat()}



def record_agent_state(site: SiteDir, *, kind: str, study: str | None, plan_hash: str,
                       round_: int, ok: bool, error_code: str = "", reason: str = "") -> None:
    """Store the agent's state after a task; never raises (the task's reply matters more)."""
    try:
        state = AgentState(kind=kind, study=study, plan_hash=plan_hash[:128],
                           round=round_, at=datetime.now(UTC), ok=ok, error_code=error_code,
                           reason=reason)
        with SiteStore.open(site) as store:
            store.put_setting(AGENT_STATE_KEY, json.dumps(state.to_json(), sort_keys=True))
    except Exception:  # the boundary of a bookkeeping step
        log.warning("the agent state could not be recorded", exc_info=True)


def read_agent_state(site: SiteDir) -> AgentState | None:
    """The agent's last recorded state, or None."""
    with SiteStore.open(site) as store:
        text = store.setting(AGENT_STATE_KEY)
    if text is None:
        return None
    try:
        raw = json.loads(text)
        return AgentState(**{**raw, "at": datetime.fromisoformat(raw["at"])})
    except (ValueError, TypeError, KeyError):
        return None

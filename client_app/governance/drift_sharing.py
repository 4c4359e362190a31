"""Whether this site answers the coordinator's drift requests: off until the operator says so.

Drift statistics (per-feature histograms of the newest dataset version, DP-noised and in the
ledger, client_app/agent/drift.py) leave the site only when the approved plan declares
``[drift]`` *and* this setting is on. Each change is a ``sharing_changed`` site event,
mirrored into the audit trail.
"""

from __future__ import annotations

from client_app.store.events import SiteEvent
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError

#: Site setting: whether this site answers drift requests ("yes"; anything else: no).
DRIFT_SHARING_KEY = "drift.share_with_coordinator"


def drift_shared(store: SiteStore) -> bool:
    """Whether the operator allowed drift releases (off unless switched on)."""
    return (store.setting(DRIFT_SHARING_KEY) or "no").lower() == "yes"


def set_drift_sharing(store: SiteStore, allowed: bool, *, actor: str) -> bool:
    """Record the operator's choice; False (nothing written) when it is unchanged."""
    if not actor.strip():
        raise TesseraError(ErrorCode.CONFIG_INVALID, "actor: must be a non-empty name")
    if drift_shared(store) == allowed:
        return False
    store.put_setting(DRIFT_SHARING_KEY, "yes" if allowed else "no")
    store.record_event(SiteEvent.SHARING_CHANGED,
                       details={"what": "drift", "allowed": allowed, "actor": actor})
    return True

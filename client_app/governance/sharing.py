"""What this site agrees to share beyond encrypted updates and evaluation sums.

Two kinds of per-site statistics leave a site in plaintext (signed) when a study asks for
them: its own evaluation counts for a leave-one-site-out check (``own_counts``) and its
permutation feature importance on its held-out rows (``importance``). Both are allowed
unless the operator says no; each change is a site event, mirrored into the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError

#: Setting keys in the site store, by the name operators use.
SHARING_KEYS: dict[str, str] = {
    "own_counts": "evaluation.share_own_counts",
    "importance": "evaluation.share_importance",
}
SHARE_OWN_COUNTS = SHARING_KEYS["own_counts"]
SHARE_IMPORTANCE = SHARING_KEYS["importance"]


@dataclass(frozen=True)
class Sharing:
    """Whether this site shares each kind of per-site statistic."""

    own_counts: bool
    importance: bool

    def to_json(self) -> dict[str, bool]:
        return {"own_counts": self.own_counts, "importance": self.importance}


def shares(store: SiteStore, what: str) -> bool:
    """Whether the site shares ``what`` (a name in SHARING_KEYS); yes unless set to no."""
    return (store.setting(_key(what)) or "yes").lower() != "no"


def sharing(store: SiteStore) -> Sharing:
    """The site's current sharing choices."""
    return Sharing(own_counts=shares(store, "own_counts"),
                   importance=shares(store, "importance"))


def set_sharing(store: SiteStore, what: str, allowed: bool, *, actor: str) -> bool:
    """Record a sharing choice; returns False (and writes nothing) when it is unchanged."""
    if not actor.strip():
        raise TesseraError(ErrorCode.CONFIG_INVALID, "actor: must be a non-empty name")
    if shares(store, what) == allowed:
        return False
    store.put_setting(_key(what), "yes" if allowed else "no")
    store.record_event("sharing_changed",
                       details={"what": what, "allowed": allowed, "actor": actor})
    return True


def refuse_unless_shared(store: SiteStore, what: str, message: str) -> None:
    """PERMISSION_DENIED with ``message`` when the operator switched ``what`` off."""
    if not shares(store, what):
        raise TesseraError(ErrorCode.PERMISSION_DENIED, message)


def _key(what: str) -> str:
    try:
        return SHARING_KEYS[what]
    except KeyError:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"unknown sharing choice '{what}'; one of: "
                           f"{', '.join(SHARING_KEYS)}") from None

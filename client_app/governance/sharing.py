"""What this site agrees to share beyond encrypted updates and evaluation sums.

Two kinds of per-site statistics leave a site in plaintext (signed) when a study asks for
them: its own evaluation counts for a leave-one-site-out check (``own_counts``) and its
permutation feature importance on its held-out rows (``importance``). Both are allowed
unless the operator says no; each change is a site event, mirrored into the audit trail.
Histogram cells and groups smaller than the site's minimum cell count (default 10) are
merged or suppressed before any counts are shared.
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


#: Smallest count a shared histogram cell may hold (zero apart), unless the site sets another.
DEFAULT_MIN_CELL = 10
MIN_CELL_KEY = "evaluation.min_cell_count"


def min_cell_count(store: SiteStore) -> int:
    """The smallest non-zero count this site lets a shared histogram cell or group hold."""
    text = store.setting(MIN_CELL_KEY)
    try:
        return max(1, int(text)) if text is not None else DEFAULT_MIN_CELL
    except ValueError:
        return DEFAULT_MIN_CELL


def set_min_cell_count(store: SiteStore, value: int, *, actor: str) -> None:
    """Set the smallest shared cell count (at least 1); recorded as a sharing change."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"min_cell_count: must be a whole number from 1 to 10000, got {value!r}")
    if not actor.strip():
        raise TesseraError(ErrorCode.CONFIG_INVALID, "actor: must be a non-empty name")
    store.put_setting(MIN_CELL_KEY, str(value))
    store.record_event("sharing_changed",
                       details={"what": "min_cell_count", "value": value, "actor": actor})


def _key(what: str) -> str:
    try:
        return SHARING_KEYS[what]
    except KeyError:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"unknown sharing choice '{what}'; one of: "
                           f"{', '.join(SHARING_KEYS)}") from None

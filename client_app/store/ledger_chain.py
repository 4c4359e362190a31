"""The privacy ledger's integrity: every entry MACed and chained, the tail pinned by a head.

Each ledger entry carries ``mac = HMAC-SHA256(key, context || previous mac || content)``,
where ``content`` is the canonical JSON of every other column of the entry (its id
included) and the first entry's previous MAC is :data:`GENESIS`. The head (a settings row,
itself MACed) holds the number of entries, the last entry's id and its MAC, so removing
entries from the end is detected too. The key (:class:`LedgerKey`) never lives in the
store: whoever opens the store with the site's vault passes it in
(:func:`client_app.custody.site_secrets.ledger_key`).

:func:`verify_chain` is pure: it takes the rows and the head's stored text and names the
first entry that does not verify, with the most likely cause (modified, deleted, inserted,
reordered, not authenticated, truncated).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from client_app.store.tables import LedgerRow
from common.errors import ErrorCode, TesseraError

#: The "previous MAC" of the first entry.
GENESIS = "0" * 64
#: The settings row that pins the ledger's tail.
HEAD_KEY = "ledger_head"
_ENTRY = b"tessera/ledger-entry/v1\x00"
_HEAD = b"tessera/ledger-head/v1\x00"


@dataclass(frozen=True)
class LedgerKey:
    """The key that authenticates a site's ledger (32 bytes; never printed)."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != 32:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "ledger key: must be 32 bytes")

    def tag(self, context: bytes, *parts: str) -> str:
        """HMAC-SHA256 (hex) of ``context`` and the length-prefixed ``parts``."""
        mac = hmac.new(self.key, context, hashlib.sha256)
        for part in parts:
            data = part.encode("utf-8")
            mac.update(len(data).to_bytes(8, "big") + data)
        return mac.hexdigest()


def utc(at: datetime) -> datetime:
    """``at`` as an aware UTC time (SQLite hands back naive UTC times)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def entry_content(row: LedgerRow) -> str:
    """The canonical text of an entry's columns (all but its MAC) that its MAC covers."""
    return json.dumps({
        "id": row.id, "at": utc(row.at).isoformat(), "kind": row.kind,
        "mechanism": row.mechanism, "parameters": row.parameters,
        "plan_hash": row.plan_hash, "study": row.study, "run_id": row.run_id,
        "round": row.round, "dataset_id": row.dataset_id,
        "dataset_version": row.dataset_version, "delta": float(row.delta),
        "epsilon": float(row.epsilon), "epsilon_cumulative": float(row.epsilon_cumulative),
    }, sort_keys=True, separators=(",", ":"), allow_nan=False)


def entry_mac(key: LedgerKey, previous: str, row: LedgerRow) -> str:
    """The MAC an entry must carry after the entry whose MAC is ``previous``."""
    return key.tag(_ENTRY, previous, entry_content(row))


@dataclass(frozen=True)
class LedgerHead:
    """How many entries the ledger holds and which one is the last."""

    count: int
    last_id: int
    mac: str

    def to_setting(self, key: LedgerKey) -> str:
        """The head as stored: its fields and a MAC over them."""
        return json.dumps({"count": self.count, "last_id": self.last_id, "mac": self.mac,
                           "tag": key.tag(_HEAD, str(self.count), str(self.last_id), self.mac)},
                          sort_keys=True)

    @classmethod
    def from_setting(cls, text: str, key: LedgerKey) -> LedgerHead | None:
        """The stored head, or None if it does not verify under ``key``."""
        try:
            doc = json.loads(text)
            head = cls(count=int(doc["count"]), last_id=int(doc["last_id"]), mac=str(doc["mac"]))
            tag = str(doc["tag"])
        except (ValueError, KeyError, TypeError):
            return None
        expected = key.tag(_HEAD, str(head.count), str(head.last_id), head.mac)
        return head if hmac.compare_digest(tag, expected) else None


@dataclass(frozen=True)
class LedgerCheck:
    """The verdict on a ledger's chain: intact, or the first entry that fails and why."""

    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str = ""

    def refusal(self) -> TesseraError:
        """The error a site raises instead of recording on a ledger that fails its check."""
        where = f"entry {self.first_bad}" if self.first_bad is not None else "its head"
        return TesseraError(
            ErrorCode.DATA_INVALID,
            f"ledger: the privacy ledger failed its integrity check at {where}: "
            f"{self.reason}; this site records no release until it is resolved",
        )

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "entries": self.entries, "first_bad": self.first_bad,
                "reason": self.reason}


def _bad(rows: Sequence[LedgerRow], first_bad: int | None, reason: str) -> LedgerCheck:
    return LedgerCheck(ok=False, entries=len(rows), first_bad=first_bad, reason=reason)


def _mismatch(rows: Sequence[LedgerRow], index: int, key: LedgerKey) -> LedgerCheck:
    """Why ``rows[index]`` does not follow the entry before it: the likeliest cause."""
    row = rows[index]
    previous = (rows[index - 1].mac or "") if index > 0 else GENESIS
    following = rows[index + 1] if index + 1 < len(rows) else None
    if following is not None and hmac.compare_digest(
            following.mac or "", entry_mac(key, previous, following)):
        return _bad(rows, row.id, "it was inserted into the ledger")
    expected_id = (rows[index - 1].id or 0) + 1 if index > 0 else 1
    if (row.id or 0) > expected_id:
        return _bad(rows, row.id, f"the entries before it (from id {expected_id}) were "
                                  "deleted, or it was modified")
    return _bad(rows, row.id, "its content or MAC was modified, or entries were reordered")


def verify_chain(rows: Sequence[LedgerRow], head_text: str | None,
                 key: LedgerKey) -> LedgerCheck:
    """Check every entry's MAC, their order and the head; name the first that fails.

    ``rows`` are every ledger row ordered by id; ``head_text`` is the stored head (None if
    there is none, as in a ledger that was never sealed).
    """
    ordered = list(rows)
    if head_text is None:
        if not ordered:
            return LedgerCheck(ok=True, entries=0)
        if all(r.mac is None for r in ordered):
            return _bad(ordered, ordered[0].id,
                        "the entries are not authenticated yet (open the ledger with the "
                        "site's vault to seal them)")
        return _bad(ordered, ordered[-1].id,
                    "the ledger head is missing: entries may have been removed from the end")
    head = LedgerHead.from_setting(head_text, key)
    if head is None:
        return _bad(ordered, None, "the ledger head was modified or made with another key")
    previous = GENESIS
    for index, row in enumerate(ordered):
        if row.mac is None:
            return _bad(ordered, row.id, "it is not authenticated (added without the key)")
        if not hmac.compare_digest(row.mac, entry_mac(key, previous, row)):
            return _mismatch(ordered, index, key)
        previous = row.mac
    last_id = (ordered[-1].id or 0) if ordered else 0
    if len(ordered) < head.count or (ordered and last_id < head.last_id):
        return _bad(ordered, head.last_id,
                    f"the ledger ends after {len(ordered)} entries but its head records "
                    f"{head.count}, the last being entry {head.last_id}: entries were "
                    "removed from the end")
    if (len(ordered), last_id, previous) != (head.count, head.last_id, head.mac):
        return _bad(ordered, last_id or None,
                    "the ledger head does not match its last entry (an older head was "
                    "restored)")
    return LedgerCheck(ok=True, entries=len(ordered))

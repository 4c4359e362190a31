"""The privacy ledger's integrity, as the holder of the site's vault sees it.

The store MACs and chains every entry under a key derived from the vault's data key
(:func:`client_app.custody.site_secrets.ledger_key`); only code holding the vault can check
the ledger, and this module is where it does so:

- **sealing** (a migration step that needs the key): entries recorded before the ledger
  was authenticated (store revision 0004 leaves their MAC empty) are MACed in order the
  first time the vault opens the ledger, that is when the vault holds no ledger anchor yet;
- **verifying** the chain and its head (:func:`client_app.store.ledger_chain.verify_chain`);
- **the anchor**: a vault secret holding the number of entries, the last entry's id and
  MAC at the last successful check. The ledger may only grow past it: a ledger emptied or
  cut back together with its head (or restored from an older copy of ``site.db``) is
  caught because it holds fewer entries than the vault has seen, or a different entry
  where the anchor's last one was.

Restoring old copies of both ``site.db`` and the vault is beyond what a site can detect
alone; the signed audit trail (every entry is mirrored into it) is the record for that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from client_app.custody.site_secrets import ledger_key
from client_app.custody.vault import SiteVault
from client_app.store.ledger_chain import LedgerCheck
from client_app.store.site_store import SiteStore

ANCHOR_SECRET = "ledger-anchor"  # noqa: S105 (a vault entry name)


@dataclass(frozen=True)
class _Anchor:
    count: int
    last_id: int
    mac: str


def _read_anchor(vault: SiteVault) -> _Anchor | None:
    raw = vault.read_secret(ANCHOR_SECRET)
    if raw is None:
        return None
    doc = json.loads(raw)
    return _Anchor(int(doc["count"]), int(doc["last_id"]), str(doc["mac"]))


def _write_anchor(vault: SiteVault, anchor: _Anchor) -> None:
    vault.write_secret(ANCHOR_SECRET, json.dumps(
        {"count": anchor.count, "last_id": anchor.last_id, "mac": anchor.mac}).encode())


@contextmanager
def keyed_store(vault: SiteVault) -> Iterator[SiteStore]:
    """The site's store opened with its ledger key (it may record and verify entries)."""
    with SiteStore.open(vault.site, ledger_key=ledger_key(vault)) as store:
        yield store


def check_ledger(vault: SiteVault, store: SiteStore | None = None) -> LedgerCheck:
    """Seal a never-authenticated ledger, verify the chain and hold it to the vault's anchor.

    ``store`` must have been opened with the vault's ledger key (None: open one).
    """
    if store is None:
        with keyed_store(vault) as own:
            return check_ledger(vault, own)
    anchor = _read_anchor(vault)
    if anchor is None:
        store.seal_ledger()
    check = store.verify_ledger()
    if not check.ok:
        return check
    entries = store.ledger()
    if anchor is not None and anchor.count > 0:
        if len(entries) < anchor.count:
            return LedgerCheck(
                ok=False, entries=len(entries), first_bad=anchor.last_id,
                reason=f"the ledger holds {len(entries)} entries but held {anchor.count} "
                       "when it was last checked: entries were removed")
        kept = entries[anchor.count - 1]
        if (kept.id, kept.mac) != (anchor.last_id, anchor.mac):
            return LedgerCheck(
                ok=False, entries=len(entries), first_bad=anchor.last_id,
                reason="the entries the ledger held when it was last checked were replaced")
    if anchor is None or len(entries) > anchor.count:
        last = entries[-1] if entries else None
        _write_anchor(vault, _Anchor(len(entries), last.id if last else 0,
                                     (last.mac or "") if last else ""))
    return check


def require_intact_ledger(vault: SiteVault, store: SiteStore) -> None:
    """Raise (DATA_INVALID, naming the first bad entry) unless the ledger passes its check."""
    check = check_ledger(vault, store)
    if not check.ok:
        raise check.refusal()

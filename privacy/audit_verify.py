"""Key-less verification of an audit log (see docs/audit-format.md).

:func:`verify_log` is a pure walk over the file that finds the earliest fault and classifies
it (modified, reordered, missing, inserted, truncated, bad_signature, replaced,
incomplete_tail, not_an_audit_log). Verification needs no secret key: payloads are bound to
headers by the digest of their ciphertext. Given the signed federation manifest, the party's
signing key is pinned from it, so a log rebuilt whole under another key is detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ErrorCode, TesseraError
from privacy.audit_format import (
    CHECKPOINT_DOMAIN,
    PREAMBLE_DOMAIN,
    ZERO_HASH,
    Fault,
    FormatError,
    MerkleFrontier,
    VerifyReport,
    check_checkpoint_shape,
    check_preamble,
    check_record,
    checkpoint_claims,
    parse_line,
    preamble_claims,
    signature_ok,
)
from privacy.manifest import Manifest, describe_party

_LOG_MARKERS = (b'"type":"preamble"', b'"format":"tessera-audit-log"')

# --- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    line: int  # 1-based line number in the file
    kind: str  # "record", "checkpoint" or "bad"
    obj: dict[str, Any] | None = None
    leaf: str = ""
    reason: str = ""


def _entry(line: int, raw: bytes) -> _Entry:
    try:
        obj = parse_line(raw)
        kind = obj.get("type")
        if kind == "record":
            return _Entry(line, "record", obj, leaf=check_record(obj))
        if kind == "checkpoint":
            check_checkpoint_shape(obj)
            return _Entry(line, "checkpoint", obj)
        raise FormatError("unknown line type")
    except FormatError as exc:
        return _Entry(line, "bad", reason=str(exc))


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    parts = data.split(b"\n")
    return parts[:-1], parts[-1]


def _trusted(trusted: Any, log_id: str) -> dict[str, Any]:
    if not isinstance(trusted, dict):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "trusted_checkpoint: must be a dict")
    try:
        check_checkpoint_shape({k: v for k, v in trusted.items() if k != "type"} | {"type": 0})
    except FormatError as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"trusted_checkpoint: {exc}") from None
    if trusted["log_id"] != log_id:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "trusted_checkpoint: belongs to another audit log")
    return trusted


class _Walk:
    """State of one verification pass; :meth:`run` returns the report."""

    def __init__(self, entries: list[_Entry], preamble: dict[str, Any],
                 trusted: dict[str, Any] | None, *, pinned: bool) -> None:
        self.entries, self.preamble, self.trusted = entries, preamble, trusted
        self.pinned = pinned
        self.log_id: str = preamble["log_id"]
        self.frontier = MerkleFrontier()
        self.prev, self.prev_prev = ZERO_HASH, ""  # hash of last accepted, its header.prev
        self.checkpointed = 0
        self.trusted_root: str | None = None

    def report(self, fault: Fault | None, index: int | None, message: str,
               line: int | None = None) -> VerifyReport:
        n = self.frontier.size
        size = self.trusted["tree_size"] if self.trusted else None
        tail_ok = fault is None and size is not None and n <= size
        if fault is None and not tail_ok:
            if size is None:
                message = (f"{n} records, no fault found; they are not covered by a trusted "
                           f"checkpoint ({self.checkpointed} under a signed checkpoint in the "
                           "file), so records cut from the end cannot be ruled out "
                           "(unverified tail)")
            else:
                message = (f"{n} records, no fault found; records {size}..{n - 1} are not "
                           "covered by the trusted checkpoint (unverified tail)")
        return VerifyReport(ok=fault is None, records=n, last_index=n - 1, fault=fault,
                            first_bad_index=index, tail_verified=tail_ok, message=message,
                            checkpointed=self.checkpointed, line=line, log_id=self.log_id,
                            party=self.preamble["party"], role=self.preamble["role"],
                            pinned=self.pinned)

    def _next_record(self, k: int) -> _Entry | None:
        for j in range(k + 1, len(self.entries)):
            if self.entries[j].kind == "record":
                return self.entries[j]
        return None

    def _classify(self, k: int, e: _Entry) -> tuple[Fault, int, str] | None:
        p = self.frontier.size
        assert e.obj is not None
        header = e.obj["header"]
        i, prev = header["index"], header["prev"]
        if header["log"] != self.log_id:
            return Fault.INSERTED, p, f"record at position {p} belongs to another log"
        nxt = self._next_record(k)
        if i == p:
            if prev == self.prev:
                return None
            if nxt is not None and nxt.obj is not None and nxt.obj["header"]["index"] == p \
                    and nxt.obj["header"]["prev"] == self.prev:
                return Fault.INSERTED, p, f"record at position {p} is not part of the chain"
            bad = max(p - 1, 0)
            return Fault.MODIFIED, bad, f"record {p} does not chain to record {p - 1}"
        if i < p:
            if i == p - 1 and prev == self.prev_prev and e.leaf != self.prev and \
                    nxt is not None and nxt.obj is not None and \
                    nxt.obj["header"]["prev"] == e.leaf:
                return Fault.INSERTED, p - 1, f"record at position {p - 1} was inserted"
            return Fault.INSERTED, p, f"record at position {p} repeats index {i}"
        later = any(x.kind == "record" and x.obj is not None and x.obj["header"]["index"] == p
                    for x in self.entries[k + 1:])
        if later:
            return Fault.REORDERED, p, f"record {p} appears out of order"
        return Fault.MISSING, p, f"record {p} is missing"

    def _check_trusted_root(self) -> None:
        if self.trusted and self.frontier.size == self.trusted["tree_size"]:
            self.trusted_root = self.frontier.root().hex()

    def run(self, tail_entry: _Entry | None, tail_incomplete: bool) -> VerifyReport:
        self._check_trusted_root()
        party = self.preamble["party_public"]
        for k, e in enumerate(self.entries):
            p = self.frontier.size
            if e.kind == "bad":
                return self.report(Fault.MODIFIED, p, f"line {e.line}: {e.reason}", e.line)
            assert e.obj is not None
            if e.kind == "record":
                fault = self._classify(k, e)
                if fault:
                    return self.report(fault[0], fault[1], fault[2], e.line)
                self.prev_prev, self.prev = e.obj["header"]["prev"], e.leaf
                self.frontier.add(bytes.fromhex(e.leaf))
                self._check_trusted_root()
                continue
            cp = e.obj
            if not signature_ok(party, cp["signature"], CHECKPOINT_DOMAIN,
                                 checkpoint_claims(cp)):
                return self.report(Fault.BAD_SIGNATURE, p,
                                   f"line {e.line}: checkpoint signature does not verify",
                                   e.line)
            if cp["log_id"] != self.log_id:
                return self.report(Fault.INSERTED, p,
                                   f"line {e.line}: checkpoint of another log", e.line)
            if cp["tree_size"] > p:
                return self.report(Fault.MISSING, p, f"line {e.line}: checkpoint covers "
                                   f"{cp['tree_size']} records but only {p} precede it", e.line)
            if cp["tree_size"] < p:
                return self.report(Fault.INSERTED, cp["tree_size"], f"line {e.line}: "
                                   f"checkpoint covers {cp['tree_size']} records but {p} "
                                   "precede it", e.line)
            if cp["root"] != self.frontier.root().hex():
                return self.report(Fault.MODIFIED, self.checkpointed,
                                   f"line {e.line}: records {self.checkpointed}..{p - 1} "
                                   "differ from what the checkpoint signed", e.line)
            self.checkpointed = p
        n = self.frontier.size
        if tail_entry is not None:
            return self.report(Fault.MODIFIED, n, f"line {tail_entry.line}: line terminator "
                               "missing or modified", tail_entry.line)
        if self.trusted:
            size = self.trusted["tree_size"]
            if n < size:
                return self.report(Fault.TRUNCATED, n, f"log holds {n} records but the "
                                   f"trusted checkpoint covers {size}")
            if self.trusted_root != self.trusted["root"]:
                return self.report(Fault.MODIFIED, min(self.checkpointed, size),
                                   "records differ from what the trusted checkpoint signed")
        if tail_incomplete:
            return self.report(Fault.INCOMPLETE_TAIL, n, f"incomplete last line after record "
                               f"{n - 1} (interrupted append); complete records verify",
                               len(self.entries) + 2)
        return self.report(None, None, f"{n} records verified")


def _looks_like_a_log(lines: list[bytes], tail: bytes) -> bool:
    """Whether a file whose preamble does not parse shows any sign of being an audit log.

    Two markers of the preamble and every later line count, so no single changed byte can
    turn a damaged log into "not an audit log"."""
    first = lines[0] if lines else tail
    if any(marker in first for marker in _LOG_MARKERS):
        return True
    return any(_entry(n + 2, raw).kind != "bad" for n, raw in enumerate(lines[1:]))


def _preamble_fault(fault: Fault, message: str, *,
                    preamble: dict[str, Any] | None = None, pinned: bool = False) -> VerifyReport:
    party = preamble["party"] if preamble else None
    role = preamble["role"] if preamble else None
    log_id = preamble["log_id"] if preamble else None
    return VerifyReport(ok=False, records=0, last_index=-1, fault=fault, first_bad_index=-1,
                        tail_verified=False, message=message, line=1, log_id=log_id,
                        party=party, role=role, pinned=pinned)


def _pin(preamble: dict[str, Any], manifest: Manifest | None,
         party_public: str | None) -> VerifyReport | None:
    """A fault if the preamble's key is not the pinned one; None if it is (or none is)."""
    if party_public is not None and preamble["party_public"] != party_public.lower():
        return _preamble_fault(Fault.BAD_SIGNATURE, "preamble: signed by an unexpected key",
                               preamble=preamble)
    if manifest is None:
        return None
    role, party = preamble["role"], preamble["party"]
    expected = manifest.signing_key_of(role=role, party=party)
    if expected is None:
        return _preamble_fault(Fault.REPLACED, f"preamble: the log claims {role} {party!r}, "
                               f"which the federation manifest ({manifest.name!r}) does not "
                               "list", preamble=preamble, pinned=True)
    if preamble["party_public"] != expected:
        return _preamble_fault(Fault.REPLACED, "preamble: signed by a key the manifest does "
                               f"not give to {describe_party(role, party)}",
                               preamble=preamble, pinned=True)
    return None


def verify_bytes(data: bytes, *, trusted_checkpoint: dict[str, Any] | None = None,
                 party_public: str | None = None,
                 manifest: Manifest | None = None) -> VerifyReport:
    """Verify the content of an audit-log file (see :func:`verify_log`)."""
    lines, tail = _split_lines(data)
    if not data:
        return _preamble_fault(Fault.NOT_A_LOG, "the file is empty: not a Tessera audit log")
    try:
        if not lines:
            raise FormatError("missing or incomplete")
        preamble = parse_line(lines[0])
        check_preamble(preamble)
    except FormatError as exc:
        if not _looks_like_a_log(lines, tail):
            return _preamble_fault(Fault.NOT_A_LOG, "not a Tessera audit log (its first line "
                                   "is not an audit-log preamble)")
        return _preamble_fault(Fault.MODIFIED, f"preamble: {exc}")
    if not signature_ok(preamble["party_public"], preamble["signature"], PREAMBLE_DOMAIN,
                         preamble_claims(preamble)):
        return _preamble_fault(Fault.BAD_SIGNATURE, "preamble: signature does not verify")
    pin_fault = _pin(preamble, manifest, party_public)
    if pin_fault is not None:
        return pin_fault
    trusted = None
    if trusted_checkpoint is not None:
        trusted = _trusted(trusted_checkpoint, preamble["log_id"])
        if not signature_ok(preamble["party_public"], str(trusted["signature"]),
                             CHECKPOINT_DOMAIN, checkpoint_claims(trusted)):
            return _preamble_fault(Fault.BAD_SIGNATURE, "trusted checkpoint does not verify "
                                   "under the preamble's party key", preamble=preamble,
                                   pinned=manifest is not None)
    entries = [_entry(n + 2, raw) for n, raw in enumerate(lines[1:])]
    tail_entry, tail_incomplete = None, False
    if tail:
        candidate = _entry(len(lines) + 1, tail[:-1])
        if candidate.kind != "bad":  # a complete line whose newline was overwritten
            tail_entry = _Entry(candidate.line, "bad", reason="line terminator modified")
        else:
            tail_incomplete = True
    walk = _Walk(entries, preamble, trusted, pinned=manifest is not None)
    return walk.run(tail_entry, tail_incomplete)


def verify_log(path: Path, *, trusted_checkpoint: dict[str, Any] | None = None,
               party_public: str | None = None,
               manifest: Manifest | None = None) -> VerifyReport:
    """Verify the audit log at ``path`` without any secret key.

    ``manifest`` (the signed federation manifest from the verifier's own kit) pins the key of
    the party the preamble names: a log signed under any other key is ``replaced``.
    ``trusted_checkpoint`` (a checkpoint dict kept elsewhere) detects truncation below its
    tree size and, covering every record, makes the log fully verified; ``party_public``
    pins one key directly (the party reopening its own log).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND, f"path: no audit log named {Path(path).name}") \
            from None
    except IsADirectoryError:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"path: {Path(path).name} is a folder, not an audit log") from None
    return verify_bytes(data, trusted_checkpoint=trusted_checkpoint, party_public=party_public,
                        manifest=manifest)

"""Audit-log format primitives and key-less verification (see docs/audit-format.md).

Owns the byte-level rules every reader of an audit log shares: canonical lines, record leaf
hashes, RFC 6962 Merkle roots, checkpoint signatures, and :func:`verify_log`, a pure walk over
the file that finds the earliest fault and classifies it (modified, reordered, missing,
inserted, truncated, bad_signature, incomplete_tail). Verification needs no key: payloads are
bound to headers by the digest of their ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from common.errors import ErrorCode, TesseraError
from privacy.signing import canonical, verify

FORMAT = "tessera-audit-log"
FORMAT_VERSION = 1
PREAMBLE_DOMAIN = "audit-preamble"
CHECKPOINT_DOMAIN = "audit-checkpoint"
ZERO_HASH = "00" * 32

PREAMBLE_KEYS = frozenset({"type", "format", "version", "log_id", "party", "role",
                           "party_public", "auditor_public", "sealed_key", "party_key",
                           "created", "signature"})
HEADER_KEYS = frozenset({"v", "log", "index", "time", "actor", "role", "event", "plan_hash",
                         "payload_sha256", "prev"})
RECORD_KEYS = frozenset({"type", "header", "hash", "ct"})
CHECKPOINT_KEYS = frozenset({"type", "log_id", "tree_size", "root", "time", "signature"})

HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
EVENT_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_LOG_ID = re.compile(r"[0-9a-f]{32}")


class Fault(StrEnum):
    """What kind of damage :func:`verify_log` found first."""

    MODIFIED = "modified"
    REORDERED = "reordered"
    MISSING = "missing"
    INSERTED = "inserted"
    TRUNCATED = "truncated"
    BAD_SIGNATURE = "bad_signature"
    INCOMPLETE_TAIL = "incomplete_tail"


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_log`. ``first_bad_index`` is -1 for the preamble."""

    ok: bool
    records: int
    last_index: int
    fault: Fault | None
    first_bad_index: int | None
    tail_verified: bool
    message: str
    checkpointed: int = 0
    line: int | None = None
    log_id: str | None = None

    @property
    def fully_verified(self) -> bool:
        """No fault and every record covered by a verified signed checkpoint."""
        return self.ok and self.tail_verified


# --- hashing -----------------------------------------------------------------------------


def leaf_hash(header: dict[str, Any]) -> str:
    """RFC 6962 leaf hash of a record: sha256(0x00 || canonical header), hex."""
    return hashlib.sha256(b"\x00" + canonical(header)).hexdigest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node: sha256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves (reference definition, recursive)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # largest power of two < n
    return node_hash(merkle_root(leaves[:split]), merkle_root(leaves[split:]))


class MerkleFrontier:
    """Incremental RFC 6962 root: keeps one perfect-subtree root per set bit of the size."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (subtree size, root), sizes decreasing
        self.size = 0

    def add(self, leaf: bytes) -> None:
        size, node = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            left = self._stack.pop()[1]
            node, size = node_hash(left, node), size * 2
        self._stack.append((size, node))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


# --- parsing -----------------------------------------------------------------------------


class _FormatError(Exception):
    """A line that breaks the format; the message says why (never with payload data)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_line(raw: bytes) -> dict[str, Any]:
    """Parse one line; it must be a JSON object in exactly its canonical form."""
    try:
        obj = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise _FormatError("not valid JSON") from None
    if not isinstance(obj, dict):
        raise _FormatError("not a JSON object")
    if canonical(obj) != raw:
        raise _FormatError("not in canonical form")
    return obj


def _is_int(value: Any) -> bool:
    return type(value) is int


def check_preamble(obj: dict[str, Any]) -> None:
    """Shape of the preamble (its signature is checked by the caller)."""
    if set(obj) != PREAMBLE_KEYS or obj["type"] != "preamble":
        raise _FormatError("preamble fields are not the expected set")
    if obj["format"] != FORMAT or obj["version"] != FORMAT_VERSION:
        raise _FormatError("not a version 1 Tessera audit log")
    if not isinstance(obj["log_id"], str) or not _LOG_ID.fullmatch(obj["log_id"]):
        raise _FormatError("log_id must be 32 lowercase hex characters")
    for name in ("party_public", "auditor_public"):
        if not isinstance(obj[name], str) or not HEX64.fullmatch(obj[name]):
            raise _FormatError(f"{name} must be 64 lowercase hex characters")
    if not isinstance(obj["signature"], str) or not _HEX128.fullmatch(obj["signature"]):
        raise _FormatError("signature must be 128 lowercase hex characters")
    for name in ("sealed_key", "party_key"):
        if not isinstance(obj[name], dict):
            raise _FormatError(f"{name} must be an object")


def _check_header(header: Any) -> None:
    if not isinstance(header, dict) or set(header) != HEADER_KEYS:
        raise _FormatError("header fields are not the expected set")
    if header["v"] != FORMAT_VERSION or not _is_int(header["v"]):
        raise _FormatError("header version is not 1")
    if not _is_int(header["index"]) or header["index"] < 0:
        raise _FormatError("header index is not a non-negative integer")
    checks = (("log", _LOG_ID), ("time", _TIME), ("actor", NAME_PATTERN), ("role", NAME_PATTERN),
              ("event", EVENT_PATTERN), ("payload_sha256", HEX64), ("prev", HEX64))
    for name, pattern in checks:
        if not isinstance(header[name], str) or not pattern.fullmatch(header[name]):
            raise _FormatError(f"header {name} is malformed")
    plan = header["plan_hash"]
    if plan is not None and (not isinstance(plan, str) or not HEX64.fullmatch(plan)):
        raise _FormatError("header plan_hash is malformed")


def decode_ct(text: Any) -> bytes:
    """Strict standard base64 (padded, no line breaks, canonical trailing bits)."""
    if not isinstance(text, str):
        raise _FormatError("ct must be a string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _FormatError("ct is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise _FormatError("ct is not canonical base64")
    return data


def check_record(obj: dict[str, Any]) -> str:
    """Self-consistency of a record line; returns its leaf hash (hex)."""
    if set(obj) != RECORD_KEYS:
        raise _FormatError("record fields are not the expected set")
    _check_header(obj["header"])
    ct = decode_ct(obj["ct"])
    if hashlib.sha256(ct).hexdigest() != obj["header"]["payload_sha256"]:
        raise _FormatError("payload digest does not match the ciphertext")
    leaf = leaf_hash(obj["header"])
    if obj["hash"] != leaf:
        raise _FormatError("record hash does not match its header")
    return leaf


def checkpoint_claims(cp: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint signature covers."""
    return {"log_id": cp["log_id"], "tree_size": cp["tree_size"], "root": cp["root"],
            "time": cp["time"]}


def check_checkpoint_shape(cp: Any) -> None:
    if not isinstance(cp, dict) or set(cp) - {"type"} != CHECKPOINT_KEYS - {"type"}:
        raise _FormatError("checkpoint fields are not the expected set")
    if not _is_int(cp["tree_size"]) or cp["tree_size"] < 0:
        raise _FormatError("checkpoint tree_size is not a non-negative integer")
    if not isinstance(cp["root"], str) or not HEX64.fullmatch(cp["root"]):
        raise _FormatError("checkpoint root is malformed")
    if not isinstance(cp["time"], str) or not _TIME.fullmatch(cp["time"]):
        raise _FormatError("checkpoint time is malformed")
    if not isinstance(cp["log_id"], str) or not _LOG_ID.fullmatch(cp["log_id"]):
        raise _FormatError("checkpoint log_id is malformed")
    if not isinstance(cp["signature"], str) or not _HEX128.fullmatch(cp["signature"]):
        raise _FormatError("checkpoint signature must be 128 lowercase hex characters")


def _signature_ok(public_hex: str, signature: str, domain: str, payload: Any) -> bool:
    try:
        verify(public_hex, signature, domain, payload)
    except TesseraError:
        return False
    return True


def preamble_claims(obj: dict[str, Any]) -> dict[str, Any]:
    """What the preamble signature covers: every field except ``signature``."""
    return {k: v for k, v in obj.items() if k != "signature"}


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
        raise _FormatError("unknown line type")
    except _FormatError as exc:
        return _Entry(line, "bad", reason=str(exc))


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    parts = data.split(b"\n")
    return parts[:-1], parts[-1]


def _trusted(trusted: Any, log_id: str) -> dict[str, Any]:
    if not isinstance(trusted, dict):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "trusted_checkpoint: must be a dict")
    try:
        check_checkpoint_shape({k: v for k, v in trusted.items() if k != "type"} | {"type": 0})
    except _FormatError as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"trusted_checkpoint: {exc}") from None
    if trusted["log_id"] != log_id:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "trusted_checkpoint: belongs to another audit log")
    return trusted


class _Walk:
    """State of one verification pass; :meth:`run` returns the report."""

    def __init__(self, entries: list[_Entry], preamble: dict[str, Any],
                 trusted: dict[str, Any] | None) -> None:
        self.entries, self.preamble, self.trusted = entries, preamble, trusted
        self.log_id: str = preamble["log_id"]
        self.frontier = MerkleFrontier()
        self.prev, self.prev_prev = ZERO_HASH, ""  # hash of last accepted, its header.prev
        self.checkpointed = 0
        self.trusted_root: str | None = None

    def report(self, fault: Fault | None, index: int | None, message: str,
               line: int | None = None) -> VerifyReport:
        n = self.frontier.size
        covered = max(self.checkpointed, self.trusted["tree_size"] if self.trusted else 0)
        tail_ok = fault is None and n <= covered
        if fault is None and not tail_ok:
            message = (f"{n} records, no fault found; records {covered}..{n - 1} are not "
                       "covered by a signed checkpoint (unverified tail)")
        return VerifyReport(ok=fault is None, records=n, last_index=n - 1, fault=fault,
                            first_bad_index=index, tail_verified=tail_ok, message=message,
                            checkpointed=self.checkpointed, line=line, log_id=self.log_id)

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
            if not _signature_ok(party, cp["signature"], CHECKPOINT_DOMAIN,
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


def verify_bytes(data: bytes, *, trusted_checkpoint: dict[str, Any] | None = None,
                 party_public: str | None = None) -> VerifyReport:
    """Verify the content of an audit-log file (see :func:`verify_log`)."""
    lines, tail = _split_lines(data)

    def preamble_fault(fault: Fault, message: str) -> VerifyReport:
        return VerifyReport(ok=False, records=0, last_index=-1, fault=fault,
                            first_bad_index=-1, tail_verified=False, message=message, line=1)

    if not lines:
        return preamble_fault(Fault.MODIFIED, "preamble: missing or incomplete")
    try:
        preamble = parse_line(lines[0])
        check_preamble(preamble)
    except _FormatError as exc:
        return preamble_fault(Fault.MODIFIED, f"preamble: {exc}")
    if not _signature_ok(preamble["party_public"], preamble["signature"], PREAMBLE_DOMAIN,
                         preamble_claims(preamble)):
        return preamble_fault(Fault.BAD_SIGNATURE, "preamble: signature does not verify")
    if party_public is not None and preamble["party_public"] != party_public:
        return preamble_fault(Fault.BAD_SIGNATURE, "preamble: signed by an unexpected key")
    trusted = None
    if trusted_checkpoint is not None:
        trusted = _trusted(trusted_checkpoint, preamble["log_id"])
        if not _signature_ok(preamble["party_public"], str(trusted["signature"]),
                             CHECKPOINT_DOMAIN, checkpoint_claims(trusted)):
            return preamble_fault(Fault.BAD_SIGNATURE, "trusted checkpoint does not verify "
                                  "under the preamble's party key")
    entries = [_entry(n + 2, raw) for n, raw in enumerate(lines[1:])]
    tail_entry, tail_incomplete = None, False
    if tail:
        candidate = _entry(len(lines) + 1, tail[:-1])
        if candidate.kind != "bad":  # a complete line whose newline was overwritten
            tail_entry = _Entry(candidate.line, "bad", reason="line terminator modified")
        else:
            tail_incomplete = True
    return _Walk(entries, preamble, trusted).run(tail_entry, tail_incomplete)


def verify_log(path: Path, *, trusted_checkpoint: dict[str, Any] | None = None,
               party_public: str | None = None) -> VerifyReport:
    """Verify the audit log at ``path`` without any key.

    ``trusted_checkpoint`` (a checkpoint dict kept elsewhere) detects truncation below its
    tree size; ``party_public`` pins the party key the preamble must carry.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND, f"path: no audit log named {Path(path).name}") \
            from None
    return verify_bytes(data, trusted_checkpoint=trusted_checkpoint, party_public=party_public)

"""Audit-log format primitives (see docs/audit-format.md).

Owns the byte-level rules every reader of an audit log shares: canonical lines and their
shapes, record leaf hashes, RFC 6962 Merkle roots and frontiers, checkpoint claims and
signatures, and the fault kinds and report of a verification (privacy.audit_verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from common.errors import TesseraError
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

#: Largest details object a record may carry (canonical JSON bytes).
MAX_DETAILS_BYTES = 256 * 1024
#: A record's ``ct``: 12-byte nonce, AES-GCM ciphertext of canonical details (a JSON object,
#: so at least the 2 bytes of ``{}``, at most MAX_DETAILS_BYTES), 16-byte tag.
NONCE_BYTES, TAG_BYTES = 12, 16
MIN_CT_BYTES = NONCE_BYTES + 2 + TAG_BYTES
MAX_CT_BYTES = NONCE_BYTES + MAX_DETAILS_BYTES + TAG_BYTES

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
    REPLACED = "replaced"  # signed by a key the pinned manifest does not give to its party
    INCOMPLETE_TAIL = "incomplete_tail"
    NOT_A_LOG = "not_an_audit_log"  # the file shows no sign of being an audit log at all


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_log`. ``first_bad_index`` is -1 for the preamble.

    ``tail_verified``: no fault, and a trusted checkpoint (kept away from the party's disk)
    covers every record. In-file checkpoints (``checkpointed``) are signed by the party that
    writes the log, which can cut the log back to any of them, so they never settle the tail.
    ``pinned``: the preamble's key was checked against the party's key in a signed manifest.
    """

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
    party: str | None = None
    role: str | None = None
    pinned: bool = False

    @property
    def fully_verified(self) -> bool:
        """No fault and every record covered by a verified trusted checkpoint."""
        return self.ok and self.tail_verified

    @property
    def all_checkpointed(self) -> bool:
        """No fault and every record under a signed checkpoint inside the file."""
        return self.ok and self.checkpointed == self.records


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


class FormatError(Exception):
    """A line that breaks the format; the message says why (never with payload data)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_line(raw: bytes) -> dict[str, Any]:
    """Parse one line; it must be a JSON object in exactly its canonical form."""
    try:
        obj = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise FormatError("not valid JSON") from None
    if not isinstance(obj, dict):
        raise FormatError("not a JSON object")
    if canonical(obj) != raw:
        raise FormatError("not in canonical form")
    return obj


def _is_int(value: Any) -> bool:
    return type(value) is int


def check_preamble(obj: dict[str, Any]) -> None:
    """Shape of the preamble (its signature is checked by the caller)."""
    if set(obj) != PREAMBLE_KEYS or obj["type"] != "preamble":
        raise FormatError("preamble fields are not the expected set")
    if obj["format"] != FORMAT or obj["version"] != FORMAT_VERSION:
        raise FormatError("not a version 1 Tessera audit log")
    if not isinstance(obj["log_id"], str) or not _LOG_ID.fullmatch(obj["log_id"]):
        raise FormatError("log_id must be 32 lowercase hex characters")
    for name in ("party_public", "auditor_public"):
        if not isinstance(obj[name], str) or not HEX64.fullmatch(obj[name]):
            raise FormatError(f"{name} must be 64 lowercase hex characters")
    for name in ("party", "role"):
        if not isinstance(obj[name], str) or not NAME_PATTERN.fullmatch(obj[name]):
            raise FormatError(f"{name} is malformed")
    if not isinstance(obj["signature"], str) or not _HEX128.fullmatch(obj["signature"]):
        raise FormatError("signature must be 128 lowercase hex characters")
    for name in ("sealed_key", "party_key"):
        if not isinstance(obj[name], dict):
            raise FormatError(f"{name} must be an object")


def _check_header(header: Any) -> None:
    if not isinstance(header, dict) or set(header) != HEADER_KEYS:
        raise FormatError("header fields are not the expected set")
    if header["v"] != FORMAT_VERSION or not _is_int(header["v"]):
        raise FormatError("header version is not 1")
    if not _is_int(header["index"]) or header["index"] < 0:
        raise FormatError("header index is not a non-negative integer")
    checks = (("log", _LOG_ID), ("time", _TIME), ("actor", NAME_PATTERN), ("role", NAME_PATTERN),
              ("event", EVENT_PATTERN), ("payload_sha256", HEX64), ("prev", HEX64))
    for name, pattern in checks:
        if not isinstance(header[name], str) or not pattern.fullmatch(header[name]):
            raise FormatError(f"header {name} is malformed")
    plan = header["plan_hash"]
    if plan is not None and (not isinstance(plan, str) or not HEX64.fullmatch(plan)):
        raise FormatError("header plan_hash is malformed")


def decode_ct(text: Any) -> bytes:
    """Strict standard base64 (padded, no line breaks, canonical trailing bits)."""
    if not isinstance(text, str):
        raise FormatError("ct must be a string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("ct is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise FormatError("ct is not canonical base64")
    return data


def check_record(obj: dict[str, Any]) -> str:
    """Self-consistency of a record line; returns its leaf hash (hex)."""
    if set(obj) != RECORD_KEYS:
        raise FormatError("record fields are not the expected set")
    _check_header(obj["header"])
    ct = decode_ct(obj["ct"])
    if not MIN_CT_BYTES <= len(ct) <= MAX_CT_BYTES:
        raise FormatError(f"ct is {len(ct)} bytes; a record's ciphertext is {MIN_CT_BYTES} to "
                          f"{MAX_CT_BYTES} bytes (nonce, encrypted details, tag)")
    if hashlib.sha256(ct).hexdigest() != obj["header"]["payload_sha256"]:
        raise FormatError("payload digest does not match the ciphertext")
    leaf = leaf_hash(obj["header"])
    if obj["hash"] != leaf:
        raise FormatError("record hash does not match its header")
    return leaf


def checkpoint_claims(cp: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint signature covers."""
    return {"log_id": cp["log_id"], "tree_size": cp["tree_size"], "root": cp["root"],
            "time": cp["time"]}


def check_checkpoint_shape(cp: Any) -> None:
    if not isinstance(cp, dict) or set(cp) - {"type"} != CHECKPOINT_KEYS - {"type"}:
        raise FormatError("checkpoint fields are not the expected set")
    if not _is_int(cp["tree_size"]) or cp["tree_size"] < 0:
        raise FormatError("checkpoint tree_size is not a non-negative integer")
    if not isinstance(cp["root"], str) or not HEX64.fullmatch(cp["root"]):
        raise FormatError("checkpoint root is malformed")
    if not isinstance(cp["time"], str) or not _TIME.fullmatch(cp["time"]):
        raise FormatError("checkpoint time is malformed")
    if not isinstance(cp["log_id"], str) or not _LOG_ID.fullmatch(cp["log_id"]):
        raise FormatError("checkpoint log_id is malformed")
    if not isinstance(cp["signature"], str) or not _HEX128.fullmatch(cp["signature"]):
        raise FormatError("checkpoint signature must be 128 lowercase hex characters")


def signature_ok(public_hex: str, signature: str, domain: str, payload: Any) -> bool:
    try:
        verify(public_hex, signature, domain, payload)
    except TesseraError:
        return False
    return True


def preamble_claims(obj: dict[str, Any]) -> dict[str, Any]:
    """What the preamble signature covers: every field except ``signature``."""
    return {k: v for k, v in obj.items() if k != "signature"}

"""The encrypted, hash-chained, append-only audit log of one party (writer and reader).

Owns creating a log (preamble with the per-log data key sealed to the auditor), durable
appends (one canonical JSON line per record; a batch of records, and its checkpoint, in one
write and one fsync), signed checkpoints, and reading
records back with the auditor's key. The byte format and the key-less verification live in
:mod:`privacy.audit_verify`; docs/audit-format.md specifies both.
"""

from __future__ import annotations

import base64
import copy
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.errors import ErrorCode, TesseraError
from privacy.at_rest import atomic_write_bytes
from privacy.audit_format import (
    CHECKPOINT_DOMAIN,
    EVENT_PATTERN,
    FORMAT,
    FORMAT_VERSION,
    HEX64,
    MAX_DETAILS_BYTES,
    NAME_PATTERN,
    PREAMBLE_DOMAIN,
    ZERO_HASH,
    Fault,
    MerkleFrontier,
    VerifyReport,
    checkpoint_claims,
    leaf_hash,
    parse_line,
)
from privacy.audit_verify import (
    verify_bytes,
    verify_log,
)
from privacy.manifest import Manifest
from privacy.sealing import SealingKey
from privacy.signing import SigningKey, canonical

__all__ = ["Appended", "AuditEntry", "AuditLog", "Fault", "NewRecord", "VerifyReport",
           "export_checkpoint", "load_checkpoint", "read_records", "verify_log"]

_SEAL_INFO = b"tessera/audit-seal/v1\x00"
_PARTY_INFO = b"tessera/audit-party-key/v1\x00"
_WRAP_AAD = b"tessera/audit-data-key/v1\x00"
_RECORD_AAD = b"tessera/audit-record/v1\x00"
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def utc_now() -> str:
    """UTC time, ISO 8601 with microseconds and a Z suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_aad(header: dict[str, Any]) -> bytes:
    """GCM associated data of a record: its header without the ciphertext digest."""
    return _RECORD_AAD + canonical({k: v for k, v in header.items() if k != "payload_sha256"})


def _seal_kek(shared: bytes, *, log_id: str, ephemeral_public: str, auditor_public: str) -> bytes:
    info = _SEAL_INFO + canonical({"log_id": log_id, "ephemeral_public": ephemeral_public,
                                   "auditor_public": auditor_public})
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _party_kek(signing_key: SigningKey, log_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_PARTY_INFO + log_id.encode("ascii")).derive(signing_key.raw)


def _wrap(kek: bytes, data_key: bytes, log_id: str) -> dict[str, str]:
    nonce = os.urandom(12)
    wrapped = AESGCM(kek).encrypt(nonce, data_key, _WRAP_AAD + log_id.encode("ascii"))
    return {"nonce": nonce.hex(), "wrapped": wrapped.hex()}


def _unwrap(kek: bytes, entry: dict[str, Any], log_id: str, who: str) -> bytes:
    try:
        return AESGCM(kek).decrypt(bytes.fromhex(entry["nonce"]), bytes.fromhex(entry["wrapped"]),
                                   _WRAP_AAD + log_id.encode("ascii"))
    except (InvalidTag, KeyError, TypeError, ValueError):
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"{who}: cannot unwrap this log's data key") from None


def _require(pattern: Any, value: object, param: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{param}: malformed ({pattern.pattern})")
    return value


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the one-writer lock of the log at ``path`` (an advisory ``flock`` on the sibling
    file ``<name>.lock``, created owner-only; the log's folder must exist).

    An :class:`AuditLog` keeps the chain's last hash and the Merkle frontier in memory, so
    every process that appends must open (or create) the log, append and checkpoint while
    holding this lock: two writers that each opened the log at record N would both append a
    record N and break the chain. The lock is released when the process ends, even by a
    crash.
    """
    lock = Path(path).with_name(Path(path).name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _durable_append(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class NewRecord:
    """A record to append: its event, actor, role (default: the log's), plan and details."""

    event_type: str
    actor: str
    details: dict[str, Any]
    role: str | None = None
    plan_hash: str | None = None


@dataclass(frozen=True)
class Appended:
    """What :meth:`AuditLog.append_many` appended: the records' indices, the checkpoint."""

    indices: tuple[int, ...]
    checkpoint: dict[str, Any] | None


@dataclass(frozen=True)
class AuditEntry:
    """One decrypted record: its header (as stored) and its details."""

    index: int
    header: dict[str, Any]
    details: dict[str, Any]
    checkpointed: bool


class AuditLog:
    """An open audit log that this party appends to (one writer at a time: see
    :func:`writer_lock`)."""

    __slots__ = ("_data_key", "_frontier", "_key", "_last", "_path", "_preamble")

    def __init__(self, path: Path, preamble: dict[str, Any], signing_key: SigningKey,
                 data_key: bytes, frontier: MerkleFrontier, last: str) -> None:
        self._path, self._preamble, self._key = Path(path), preamble, signing_key
        self._data_key, self._frontier, self._last = data_key, frontier, last

    def __repr__(self) -> str:
        return f"AuditLog(log_id={self.log_id!r}, records={self.size})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def log_id(self) -> str:
        return str(self._preamble["log_id"])

    @property
    def size(self) -> int:
        """Number of records (the next record's index)."""
        return self._frontier.size

    @classmethod
    def create(cls, path: Path, *, party: str, role: str, signing_key: SigningKey,
               auditor_public_hex: str) -> AuditLog:
        """Start a new log at ``path`` (never overwrites: DUPLICATE if it exists)."""
        _require(NAME_PATTERN, party, "party")
        _require(NAME_PATTERN, role, "role")
        _require(HEX64, auditor_public_hex, "auditor_public_hex")
        try:
            auditor = X25519PublicKey.from_public_bytes(bytes.fromhex(auditor_public_hex))
        except ValueError:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "auditor_public_hex: not an X25519 public key") from None
        log_id = uuid.uuid4().hex
        data_key = AESGCM.generate_key(bit_length=256)
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes(*_RAW).hex()
        kek = _seal_kek(ephemeral.exchange(auditor), log_id=log_id,
                        ephemeral_public=ephemeral_public, auditor_public=auditor_public_hex)
        sealed = {"ephemeral_public": ephemeral_public} | _wrap(kek, data_key, log_id)
        preamble: dict[str, Any] = {
            "type": "preamble", "format": FORMAT, "version": FORMAT_VERSION, "log_id": log_id,
            "party": party, "role": role, "party_public": signing_key.public_hex,
            "auditor_public": auditor_public_hex, "sealed_key": sealed,
            "party_key": _wrap(_party_kek(signing_key, log_id), data_key, log_id),
            "created": utc_now()}
        preamble["signature"] = signing_key.sign(PREAMBLE_DOMAIN, preamble)
        atomic_write_bytes(Path(path), canonical(preamble) + b"\n", overwrite=False)
        return cls(Path(path), preamble, signing_key, data_key, MerkleFrontier(), ZERO_HASH)

    @classmethod
    def open(cls, path: Path, *, signing_key: SigningKey) -> AuditLog:
        """Reopen a log to append. Verifies it first; an incomplete last line (an append
        interrupted by a crash, never acknowledged) is cut off, any other fault refuses."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TesseraError(ErrorCode.NOT_FOUND, f"path: no audit log named {path.name}") \
                from None
        report = verify_bytes(data, party_public=signing_key.public_hex)
        if report.fault is Fault.INCOMPLETE_TAIL:
            keep = data.rfind(b"\n") + 1
            with open(path, "r+b") as handle:
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
            data = data[:keep]
        elif report.fault is not None:
            code = ErrorCode.BAD_SIGNATURE if report.fault is Fault.BAD_SIGNATURE \
                else ErrorCode.DATA_INVALID
            raise TesseraError(code, f"audit log {path.name}: {report.message}")
        lines = data.split(b"\n")[:-1]
        preamble = parse_line(lines[0])
        data_key = _unwrap(_party_kek(signing_key, preamble["log_id"]), preamble["party_key"],
                           preamble["log_id"], "signing_key")
        frontier, last = MerkleFrontier(), ZERO_HASH
        for raw in lines[1:]:
            obj = json.loads(raw)
            if obj["type"] == "record":
                last = obj["hash"]
                frontier.add(bytes.fromhex(last))
        return cls(path, preamble, signing_key, data_key, frontier, last)

    def append(self, event_type: str, *, actor: str, role: str | None = None,
               plan_hash: str | None = None, details: dict[str, Any]) -> int:
        """Encrypt ``details`` and append one record durably; returns its index."""
        record = NewRecord(event_type, actor=actor, role=role, plan_hash=plan_hash,
                           details=details)
        return self.append_many([record]).indices[0]

    def append_many(self, records: Sequence[NewRecord], *,
                    checkpoint: bool = False) -> Appended:
        """Append ``records`` (and, with ``checkpoint``, a checkpoint over them) in one
        ``O_APPEND`` write and one fsync: the same lines, in the same order, as one
        :meth:`append` each (and :meth:`checkpoint`). Every record is checked before
        anything is written; an interrupted write leaves whole lines and at most one
        incomplete last line, as an interrupted :meth:`append` does."""
        frontier, last = copy.deepcopy(self._frontier), self._last
        lines: list[bytes] = []
        for record in records:
            line, last = self._record_line(record, index=frontier.size, prev=last)
            frontier.add(bytes.fromhex(last))
            lines.append(line)
        cp = self._checkpoint_of(frontier) if checkpoint else None
        if cp is not None:
            lines.append(canonical({"type": "checkpoint"} | cp) + b"\n")
        if lines:
            _durable_append(self._path, b"".join(lines))
        first = self._frontier.size
        self._frontier, self._last = frontier, last
        return Appended(indices=tuple(range(first, frontier.size)), checkpoint=cp)

    def _record_line(self, record: NewRecord, *, index: int, prev: str) -> tuple[bytes, str]:
        """One record's line (encrypted details) and its leaf hash; refuses bad fields."""
        _require(EVENT_PATTERN, record.event_type, "event_type")
        _require(NAME_PATTERN, record.actor, "actor")
        role = _require(NAME_PATTERN, self._preamble["role"] if record.role is None
                        else record.role, "role")
        if record.plan_hash is not None:
            _require(HEX64, record.plan_hash, "plan_hash")
        if not isinstance(record.details, dict):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "details: must be a dict")
        try:
            plaintext = canonical(record.details)
        except (TypeError, ValueError):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "details: must be JSON-serialisable (str keys)") from None
        if len(plaintext) > MAX_DETAILS_BYTES:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"details: larger than {MAX_DETAILS_BYTES} bytes")
        header: dict[str, Any] = {
            "v": FORMAT_VERSION, "log": self.log_id, "index": index, "time": utc_now(),
            "actor": record.actor, "role": role, "event": record.event_type,
            "plan_hash": record.plan_hash, "prev": prev}
        nonce = os.urandom(12)
        ct = nonce + AESGCM(self._data_key).encrypt(nonce, plaintext, record_aad(header))
        header["payload_sha256"] = hashlib.sha256(ct).hexdigest()
        leaf = leaf_hash(header)
        line = {"type": "record", "header": header, "hash": leaf,
                "ct": base64.b64encode(ct).decode("ascii")}
        return canonical(line) + b"\n", leaf

    def _checkpoint_of(self, frontier: MerkleFrontier) -> dict[str, Any]:
        claims = {"log_id": self.log_id, "tree_size": frontier.size,
                  "root": frontier.root().hex(), "time": utc_now()}
        return claims | {"signature": self._key.sign(CHECKPOINT_DOMAIN, claims)}

    def checkpoint(self) -> dict[str, Any]:
        """Sign {log id, tree size, root, time}, append it as a line and return it."""
        cp = self.append_many([], checkpoint=True).checkpoint
        assert cp is not None
        return cp


def export_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint (from :meth:`AuditLog.checkpoint`) to its own file, atomically."""
    atomic_write_bytes(Path(path), canonical(checkpoint_claims(checkpoint) | {
        "signature": checkpoint["signature"]}) + b"\n")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint file written by :func:`export_checkpoint`."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND, f"path: no checkpoint named {Path(path).name}") \
            from None
    except ValueError:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "checkpoint: not valid JSON") from None
    if not isinstance(doc, dict):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "checkpoint: must be a JSON object")
    return doc


def read_records(path: Path, *, auditor_key: SealingKey,
                 trusted_checkpoint: dict[str, Any] | None = None,
                 manifest: Manifest | None = None) -> list[AuditEntry]:
    """Verify the log (its party key pinned from ``manifest`` when given), then decrypt every
    complete record with the auditor's key.

    Refuses (DATA_INVALID, BAD_SIGNATURE) on any fault except an incomplete last line."""
    path = Path(path)
    report = verify_log(path, trusted_checkpoint=trusted_checkpoint, manifest=manifest)
    if report.fault not in (None, Fault.INCOMPLETE_TAIL):
        code = ErrorCode.BAD_SIGNATURE if report.fault in (Fault.BAD_SIGNATURE, Fault.REPLACED) \
            else ErrorCode.DATA_INVALID
        raise TesseraError(code, f"audit log {path.name}: {report.message}")
    lines = path.read_bytes().split(b"\n")[:-1]
    preamble = parse_line(lines[0])
    if preamble["auditor_public"] != auditor_key.public_hex:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           "auditor_key: this log is sealed to another auditor")
    sealed = preamble["sealed_key"]
    try:
        ephemeral = X25519PublicKey.from_public_bytes(bytes.fromhex(sealed["ephemeral_public"]))
    except (KeyError, TypeError, ValueError):
        raise TesseraError(ErrorCode.DATA_INVALID, "preamble: sealed_key is malformed") from None
    shared = X25519PrivateKey.from_private_bytes(auditor_key.raw).exchange(ephemeral)
    kek = _seal_kek(shared, log_id=preamble["log_id"],
                    ephemeral_public=sealed["ephemeral_public"],
                    auditor_public=preamble["auditor_public"])
    aead = AESGCM(_unwrap(kek, sealed, preamble["log_id"], "auditor_key"))
    covered = report.checkpointed if trusted_checkpoint is None else max(
        report.checkpointed, int(trusted_checkpoint["tree_size"]))
    entries: list[AuditEntry] = []
    for raw in lines[1:]:
        obj = json.loads(raw)
        if obj["type"] != "record":
            continue
        header, ct = obj["header"], base64.b64decode(obj["ct"])
        try:
            plain = aead.decrypt(ct[:12], ct[12:], record_aad(header))
        except InvalidTag:
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"record {header['index']}: payload does not decrypt") from None
        entries.append(AuditEntry(index=header["index"], header=header,
                                  details=json.loads(plain),
                                  checkpointed=header["index"] < covered))
    return entries

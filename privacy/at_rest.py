"""Encryption at rest for a site folder: the encrypted blob format, atomic encrypted files,
and the passphrase-protected keystore of data keys (privacy.passphrase says where the
passphrase comes from).

Encrypted blob (format version 1), all integers unsigned::

    offset  size  field
    0       4     magic b"TSRA"
    4       1     format version, 0x01
    5       1     L, length of the role (1..64)
    6       L     role, ASCII ``[A-Za-z0-9][A-Za-z0-9._-]*`` (e.g. "dataset", "ckks-secret")
    6+L     12    nonce, fresh from the OS CSPRNG on every encryption
    18+L    ...   AES-256-GCM ciphertext followed by its 16-byte tag

The header (bytes 0 .. 18+L) is the GCM associated data, so version, role and nonce are all
authenticated. Decrypting with the wrong role, version or key, or after any change or
truncation, raises ``DATA_INVALID`` ("integrity check failed") and says nothing of content.

Keystore (``<site>/keys/keystore.json``, mode 0600), JSON::

    {"format": "tessera-keystore", "version": 1,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<hex, 16..64 bytes>"},
     "check": {"nonce": "<hex 12>", "value": "<hex 16>"},
     "keys": {"<name>": {"nonce": "<hex 12>", "wrapped": "<hex 48>"}}}

The key-encryption key (KEK) is scrypt(NFC-normalised UTF-8 passphrase, salt); ``check`` is
the GCM tag of an empty message under it, so a wrong passphrase is caught before any data key
is touched. Each data key (32 random bytes) is AES-256-GCM wrapped under the KEK with its name
as associated data. KDF parameters read from disk are bounded (n a power of two in 2**4..2**20,
r <= 32, p <= 16, memory 128*n*r <= 1 GiB, work n*r*p <= 2**23, salt 16..64 bytes) so a hostile
keystore cannot stall unlock or exhaust memory. One writer (the site agent) owns the keystore.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes  # defined there once; still importable here

MAGIC = b"TSRA"
FORMAT_VERSION = 1
KEYSTORE_FORMAT = "tessera-keystore"
KEYSTORE_VERSION = 1
KEYSTORE_FILE = "keys/keystore.json"  # relative to a site folder

_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_BYTES = 32
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_KEYSTORE_BYTES = 1 << 20
_CHECK_AAD = b"tessera-keystore/v1\x00check"
_WRAP_AAD = b"tessera-keystore/v1\x00data-key\x00"
_WRONG = "wrong passphrase for this site's keystore"


def _require_name(value: object, param: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{param}: must be 1-64 ASCII letters, digits, '.', '_' or '-'")
    return value


def _require_key(key: object) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != _KEY_BYTES:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "key: must be 32 bytes (AES-256)")
    return bytes(key)


# --- blobs -------------------------------------------------------------------------------


def encrypt_blob(key: bytes, plaintext: bytes, *, role: str) -> bytes:
    """Encrypt ``plaintext`` under ``key`` for ``role``, with a fresh random nonce."""
    aead = AESGCM(_require_key(key))
    role_bytes = _require_name(role, "role").encode("ascii")
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "plaintext: must be bytes")
    header = MAGIC + bytes([FORMAT_VERSION, len(role_bytes)]) + role_bytes
    header += os.urandom(_NONCE_BYTES)
    return header + aead.encrypt(header[-_NONCE_BYTES:], bytes(plaintext), header)


def decrypt_blob(key: bytes, blob: bytes, *, role: str) -> bytes:
    """Decrypt a blob made by :func:`encrypt_blob` for the same ``role``; DATA_INVALID else."""
    aead = AESGCM(_require_key(key))
    role_bytes = _require_name(role, "role").encode("ascii")

    def refuse(reason: str) -> TesseraError:
        return TesseraError(ErrorCode.DATA_INVALID,
                            f"encrypted {role} data: integrity check failed ({reason})")

    blob = bytes(blob)
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise refuse("not a Tessera encrypted blob")
    if blob[4] != FORMAT_VERSION:
        raise refuse("unsupported format version")
    end = 6 + blob[5] + _NONCE_BYTES
    if len(blob) < end + _TAG_BYTES:
        raise refuse("truncated")
    if blob[6:6 + blob[5]] != role_bytes:
        raise refuse("stored for another role")
    try:
        return aead.decrypt(blob[end - _NONCE_BYTES:end], blob[end:], blob[:end])
    except InvalidTag:
        raise refuse("wrong key or modified data") from None


def write_encrypted(path: Path, key: bytes, plaintext: bytes, *, role: str) -> None:
    """Encrypt in memory and write atomically; the plaintext never touches disk."""
    atomic_write_bytes(Path(path), encrypt_blob(key, plaintext, role=role))


def read_encrypted(path: Path, key: bytes, *, role: str) -> bytes:
    """Read and decrypt a file written by :func:`write_encrypted`."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"path: no encrypted {role} file named {Path(path).name}") from None
    return decrypt_blob(key, blob, role=role)


# --- keystore ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters and salt of a keystore, validated against hostile values."""

    n: int = 2**15
    r: int = 8
    p: int = 1
    salt: bytes = field(default_factory=lambda: os.urandom(16), repr=False)

    def __post_init__(self) -> None:
        for name in ("n", "r", "p"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise TesseraError(ErrorCode.CONFIG_INVALID, f"kdf.{name}: positive integer")
        if self.n & (self.n - 1) or not 2**4 <= self.n <= 2**20:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "kdf.n: must be a power of two between 2**4 and 2**20")
        if self.r > 32 or self.p > 16:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "kdf.r <= 32 and kdf.p <= 16 required")
        if 128 * self.n * self.r > 2**30 or self.n * self.r * self.p > 2**23:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "kdf: n, r, p exceed the memory (1 GiB) or work bound")
        if not isinstance(self.salt, bytes) or not 16 <= len(self.salt) <= 64:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "kdf.salt: must be 16 to 64 bytes")

    def derive(self, passphrase: str) -> bytes:
        """The 32-byte key-encryption key for ``passphrase``."""
        secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
        return Scrypt(salt=self.salt, length=_KEY_BYTES, n=self.n, r=self.r, p=self.p).derive(
            secret)

    def to_json(self) -> dict[str, Any]:
        return {"name": "scrypt", "n": self.n, "r": self.r, "p": self.p, "salt": self.salt.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> ScryptParams:
        if not isinstance(doc, dict) or doc.get("name") != "scrypt":
            raise TesseraError(ErrorCode.CONFIG_INVALID, "kdf.name: only scrypt is supported")
        try:
            salt = bytes.fromhex(doc["salt"])
            return cls(n=doc["n"], r=doc["r"], p=doc["p"], salt=salt)
        except (KeyError, TypeError, ValueError):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "kdf: needs integer n, r, p and a hex salt") from None


def _require_passphrase(passphrase: object, param: str) -> str:
    if not isinstance(passphrase, str) or not passphrase.strip():
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{param}: must be a non-empty string")
    return passphrase


def _seal_key(kek: bytes, name: str, data_key: bytes) -> dict[str, str]:
    nonce = os.urandom(_NONCE_BYTES)
    wrapped = AESGCM(kek).encrypt(nonce, data_key, _WRAP_AAD + name.encode("ascii"))
    return {"nonce": nonce.hex(), "wrapped": wrapped.hex()}


def _make_check(kek: bytes) -> dict[str, str]:
    nonce = os.urandom(_NONCE_BYTES)
    return {"nonce": nonce.hex(), "value": AESGCM(kek).encrypt(nonce, b"", _CHECK_AAD).hex()}


def _load(path: Path) -> tuple[ScryptParams, dict[str, str], dict[str, dict[str, str]]]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_KEYSTORE_BYTES + 1)
    except FileNotFoundError:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"path: no keystore at {path.name}; create one first") from None
    if len(raw) > _MAX_KEYSTORE_BYTES:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "keystore: file is too large")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, huge ints, deep nesting
        raise TesseraError(ErrorCode.CONFIG_INVALID, "keystore: not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != KEYSTORE_FORMAT or doc.get(
            "version") != KEYSTORE_VERSION:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "keystore: not a version 1 Tessera keystore")
    kdf = ScryptParams.from_json(doc.get("kdf"))
    check, keys = doc.get("check"), doc.get("keys")
    if not isinstance(check, dict) or not isinstance(keys, dict):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "keystore: needs 'check' and 'keys'")
    for name in keys:
        _require_name(name, "keystore.keys")
    return kdf, check, keys


def _open_check(kek: bytes, check: dict[str, str]) -> None:
    try:
        AESGCM(kek).decrypt(bytes.fromhex(check["nonce"]), bytes.fromhex(check["value"]),
                            _CHECK_AAD)
    except (InvalidTag, KeyError, TypeError, ValueError):
        raise TesseraError(ErrorCode.WRONG_PASSPHRASE, _WRONG) from None


def _save(path: Path, kdf: ScryptParams, check: dict[str, str],
          keys: dict[str, dict[str, str]], *, overwrite: bool) -> None:
    doc = {"format": KEYSTORE_FORMAT, "version": KEYSTORE_VERSION, "kdf": kdf.to_json(),
           "check": check, "keys": keys}
    atomic_write_bytes(path, json.dumps(doc, indent=2, sort_keys=True).encode(),
                       overwrite=overwrite)


class Keystore:
    """An unlocked keystore: hands out data keys by name. Never shows keys in its repr."""

    __slots__ = ("_check", "_kdf", "_kek", "_keys", "_path")

    def __init__(self, *, path: Path, kek: bytes, kdf: ScryptParams, check: dict[str, str],
                 keys: dict[str, dict[str, str]]) -> None:
        self._path, self._kek, self._kdf = Path(path), kek, kdf
        self._check, self._keys = check, dict(keys)

    def __repr__(self) -> str:
        return f"Keystore(path={str(self._path)!r}, keys={sorted(self._keys)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    @classmethod
    def create(cls, path: Path, passphrase: str, *, n: int = 2**15, r: int = 8,
               p: int = 1) -> Keystore:
        """A new, empty keystore at ``path`` (never overwrites; DUPLICATE if one exists)."""
        _require_passphrase(passphrase, "passphrase")
        path = Path(path)
        if path.exists():
            raise TesseraError(ErrorCode.DUPLICATE,
                               f"path: {path.name} already exists; refusing to overwrite")
        kdf = ScryptParams(n=n, r=r, p=p)
        kek = kdf.derive(passphrase)
        check = _make_check(kek)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _save(path, kdf, check, {}, overwrite=False)
        return cls(path=path, kek=kek, kdf=kdf, check=check, keys={})

    @classmethod
    def unlock(cls, path: Path, passphrase: str) -> Keystore:
        """Open ``path``; WRONG_PASSPHRASE (and nothing written) if the passphrase is wrong."""
        _require_passphrase(passphrase, "passphrase")
        kdf, check, keys = _load(Path(path))
        kek = kdf.derive(passphrase)
        _open_check(kek, check)
        return cls(path=Path(path), kek=kek, kdf=kdf, check=check, keys=keys)

    def data_key(self, name: str = "default") -> bytes:
        """The data key called ``name``, created and persisted on first request."""
        _require_name(name, "name")
        if name not in self._keys:
            return self.add_data_key(name)
        entry = self._keys[name]
        try:
            return AESGCM(self._kek).decrypt(bytes.fromhex(entry["nonce"]),
                                             bytes.fromhex(entry["wrapped"]),
                                             _WRAP_AAD + name.encode("ascii"))
        except (InvalidTag, KeyError, TypeError, ValueError):
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"keystore.keys.{name}: integrity check failed") from None

    def add_data_key(self, name: str) -> bytes:
        """Create, wrap and persist a new random data key; DUPLICATE if ``name`` exists."""
        _require_name(name, "name")
        kdf, check, keys = _load(self._path)
        if kdf != self._kdf or check != self._check:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "keystore changed on disk (passphrase rotated?); unlock again")
        if name in keys:
            raise TesseraError(ErrorCode.DUPLICATE, f"name: data key {name!r} already exists")
        data_key = AESGCM.generate_key(bit_length=256)
        keys[name] = _seal_key(self._kek, name, data_key)
        _save(self._path, kdf, check, keys, overwrite=True)
        self._keys = keys
        return data_key

    @classmethod
    def rotate_passphrase(cls, path: Path, old: str, new: str, *, n: int | None = None,
                          r: int | None = None, p: int | None = None) -> None:
        """Re-wrap every data key under ``new`` with a fresh salt (cost defaults to the current
        one); encrypted files are untouched and their data keys stay the same."""
        _require_passphrase(new, "new")
        if new == old:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "new: must differ from the old one")
        store = cls.unlock(Path(path), old)
        plain = {name: store.data_key(name) for name in store.key_names}
        kdf = ScryptParams(n=store._kdf.n if n is None else n, r=store._kdf.r if r is None else r,
                           p=store._kdf.p if p is None else p)
        kek = kdf.derive(new)
        keys = {name: _seal_key(kek, name, key) for name, key in plain.items()}
        _save(Path(path), kdf, _make_check(kek), keys, overwrite=True)


# --- where the passphrase comes from -----------------------------------------------------

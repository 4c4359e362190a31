"""Tessera's compact ciphertext: a CKKS upload as one bit-packed polynomial and a 32-byte seed.

This module owns the compact form sites upload (``docs/envelope-format.md`` section 4.1):
its layout, the expansion of its seed, the bit packing of its first polynomial, and its
conversion to an ordinary SEAL ciphertext that TenSEAL loads. A fresh symmetric CKKS
encryption is ``(c0, c1)`` with ``c1`` uniform; the compact form stores ``c0`` and a seed from
which anyone expands ``c1``. SEAL's own seeded form does the same, but its loader expands the
seed with Blake2xb one coefficient at a time (0.2 ms per 4,096-coefficient polynomial here,
two thirds of a coordinator's sum) and zstd-decompresses inside the library; here ``c1`` comes
from the ChaCha20 keystream in bulk and ``c0`` is packed to its primes' bit lengths, so the
coordinator's sum (:mod:`privacy.he_sum`) runs on whole contributions as numpy arrays.

Layout (little-endian)::

    magic "TSC1" | u32 values | u32 N | u8 k | 4 x u64 parms_id | f64 scale | 32-byte seed
    | for each data prime j: N x b_j bits of c0 (b_j = bit length of q_j)

Polynomial ``j`` of ``c0`` is stored as its coefficients' low ``B = b_j // 8`` bytes
(coefficient after coefficient), then ``r = b_j % 8`` bit planes: plane ``t`` holds bit
``8B + t`` of every coefficient, eight coefficients to a byte, least significant bit first.
``c1``'s polynomial ``j``: the ChaCha20 keystream (RFC 8439; key = the seed, block counter 0,
96-bit nonce ``u32(j) || 0^64``) read as u64 words, each masked to ``b_j`` bits and kept if
below ``q_j``, the first ``N`` kept in order (rejection sampling: exactly uniform modulo
``q_j``). Both polynomials are in NTT form, as SEAL keeps CKKS ciphertexts.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from common.errors import ErrorCode, TesseraError
from privacy.he_layout import Layout, layout_of, seal_vector

__all__ = ["HEADER_BYTES", "MAGIC", "SEED_BYTES", "Layout", "check_reduced", "encode",
           "expand", "expand_many", "is_compact", "layout_of", "pack", "padded_bodies",
           "read_header", "seal_vector", "to_seal", "unpack"]
MAGIC = b"TSC1"
SEED_BYTES = 32
#: magic, values, N, k, parms_id, scale (the seed follows).
_HEAD = struct.Struct("<4sIIB4Qd")
HEADER_BYTES = _HEAD.size + SEED_BYTES


def expand(seed: bytes, layout: Layout) -> np.ndarray:
    """``c1`` of a compact ciphertext: ``k x N`` coefficients, uniform modulo each prime."""
    out = np.empty((1, len(layout.moduli), layout.degree), dtype=np.uint64)
    return expand_many([seed], layout, out)[0]


#: Words read beyond ``N`` per polynomial, so that a few rejections (about one per
#: polynomial for a 27-bit prime) still leave ``N`` kept words without reading again.
_SPARE_WORDS = 64


def expand_many(seeds: Sequence[bytes], layout: Layout, out: np.ndarray) -> np.ndarray:
    """``c1`` of several compact ciphertexts into ``out`` (``m x k x N``)."""
    degree, primes = layout.degree, len(layout.moduli)
    words = np.empty((len(seeds), primes, degree + _SPARE_WORDS), dtype=np.uint64)
    for i, seed in enumerate(seeds):
        for j in range(primes):
            words[i, j] = _words(seed, j, degree + _SPARE_WORDS)
    np.bitwise_and(words, layout.masks, out=words)
    kept = words < layout.column_moduli
    out[:len(seeds)] = words[:, :, :degree]
    if bool(kept[:, :, :degree].all()):
        return out
    for i, j in zip(*np.nonzero(~kept[:, :, :degree].all(axis=2)), strict=True):
        row = words[i, j][kept[i, j]]
        extra = _SPARE_WORDS
        while row.size < degree:  # too many rejections: read on until N are kept
            extra *= 2
            longer = _words(seeds[i], int(j), degree + extra) & layout.masks[j, 0]
            row = longer[longer < layout.column_moduli[j, 0]]
        out[i, j] = row[:degree]
    return out


def _words(seed: bytes, prime: int, count: int) -> np.ndarray:
    nonce = bytes(4) + struct.pack("<I", prime) + bytes(8)  # counter 0, then the nonce
    stream = Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor().update(
        bytes(8 * count))
    return np.frombuffer(stream, dtype="<u8")


def pack(c0: np.ndarray, layout: Layout) -> bytes:
    """The body of a compact ciphertext: ``c0`` (``k x N``, reduced) bit-packed."""
    parts: list[bytes] = []
    for j, bits in enumerate(layout.bits):
        low, rest = divmod(bits, 8)
        column = np.ascontiguousarray(c0[j], dtype="<u8")
        parts.append(column.view(np.uint8).reshape(-1, 8)[:, :low].tobytes())
        for t in range(rest):
            plane = ((column >> np.uint64(8 * low + t)) & np.uint64(1)).astype(np.uint8)
            parts.append(np.packbits(plane, bitorder="little").tobytes())
    return b"".join(parts)


_SPREAD = np.array([sum(((value >> bit) & 1) << (8 * bit) for bit in range(8))
                    for value in range(256)], dtype="<u8")


def unpack(bodies: np.ndarray, layout: Layout, out: np.ndarray | None = None) -> np.ndarray:
    """``c0`` of ``m`` compact ciphertexts, ``m x k x N``, from their bodies: ``m`` rows of
    ``body_bytes`` bytes in one buffer followed by at least 8 more bytes (so each
    coefficient's low bytes are read as one unaligned word). Coefficients are not yet
    checked against the primes. Written into ``out`` (at least ``m`` rows) when given."""
    count, degree, width = bodies.shape[0], layout.degree, layout.body_bytes
    if bodies.base is None or not bodies.flags.c_contiguous:
        raise ValueError("bodies: must be a C-contiguous view of a padded buffer")
    buffer = bodies.base
    if out is None:
        out = np.empty((count, len(layout.moduli), degree), dtype="<u8")
    out = out[:count]
    offset = 0
    for j, bits in enumerate(layout.bits):
        low, rest = divmod(bits, 8)
        words = np.ndarray((count, degree), dtype="<u8", buffer=buffer, offset=offset,
                           strides=(width, low))
        np.bitwise_and(words, np.uint64((1 << (8 * low)) - 1), out=out[:, j, :])
        offset += degree * low
        if rest:
            planes = bodies[:, offset:offset + rest * degree // 8].reshape(count, rest, -1)
            # Byte b of _SPREAD[x] is bit b of x: eight coefficients' bit t at once.
            high = _SPREAD[planes[:, 0, :]]
            for t in range(1, rest):
                high |= _SPREAD[planes[:, t, :]] << np.uint64(t)
            out[:, j, :].view(np.uint8).reshape(count, degree, 8)[:, :, low] = (
                high.view(np.uint8))
            offset += rest * degree // 8
    return out


def padded_bodies(chunks: Sequence[bytes], layout: Layout) -> np.ndarray:
    """The bodies of ``chunks`` (checked lengths) as :func:`unpack` reads them."""
    buffer = np.frombuffer(b"".join([*(data[HEADER_BYTES:] for data in chunks), bytes(8)]),
                           dtype=np.uint8)
    return buffer[:len(chunks) * layout.body_bytes].reshape(len(chunks), layout.body_bytes)


def encode(values: int, seed: bytes, c0: np.ndarray, layout: Layout) -> bytes:
    """A compact ciphertext of ``values`` slots with first polynomial ``c0`` and ``seed``."""
    return (_HEAD.pack(MAGIC, values, layout.degree, len(layout.moduli), *layout.parms_id,
                       layout.scale) + seed + pack(c0, layout))


def is_compact(data: object) -> bool:
    """Whether ``data`` claims to be a compact ciphertext (TenSEAL's vectors start with 0x0A)."""
    return isinstance(data, bytes) and data[:4] == MAGIC


def read_header(data: bytes, layout: Layout, *, where: str) -> tuple[int, bytes]:
    """The slot count and seed of a compact ciphertext, with every check of its header and
    length; refusals are ``BAD_CIPHERTEXT`` errors whose message starts with ``where``."""
    expected = HEADER_BYTES + layout.body_bytes
    if len(data) != expected:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           f"{where}: not a CKKS ciphertext for these encryption parameters "
                           f"({len(data)} bytes; a compact one has {expected})")
    magic, values, degree, primes, *rest = _HEAD.unpack_from(data)
    parms_id, scale = tuple(rest[:4]), rest[4]
    if magic != MAGIC or degree != layout.degree or primes != len(layout.moduli):
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           f"{where}: not a CKKS ciphertext for these encryption parameters")
    if parms_id != layout.parms_id or scale != layout.scale:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           f"{where}: is not at these parameters' data level and scale")
    if not 1 <= values <= layout.slots:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           f"{where}: claims {values} values, expected 1 to {layout.slots}")
    return values, data[_HEAD.size:HEADER_BYTES]


def check_reduced(polys: np.ndarray, layout: Layout, *, where: str) -> None:
    """Refuse coefficients at or above their prime (``polys``: ``... x k x N``)."""
    if not bool((polys < layout.column_moduli).all()):
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           f"{where}: holds a coefficient outside its modulus")


def to_seal(data: bytes, layout: Layout, *, where: str) -> bytes:
    """A compact ciphertext as TenSEAL's ordinary vector serialisation, after every check."""
    values, seed = read_header(data, layout, where=where)
    c0 = unpack(padded_bodies([data], layout), layout)[0]
    check_reduced(c0, layout, where=where)
    return seal_vector(values, c0, expand(seed, layout), layout)

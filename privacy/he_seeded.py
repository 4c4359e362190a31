"""Seeded symmetric CKKS ciphertexts: half the bytes of a TenSEAL ciphertext.

This module owns the compact ciphertext form sites upload. A fresh symmetric CKKS encryption
is a pair ``(c0, c1)`` with ``c1`` uniformly random and ``c0 = m + e - c1 * s``. SEAL can
store such a ciphertext as ``c0`` plus the 64-byte seed ``c1`` was expanded from, and its
loader expands the seed again; TenSEAL's vector API keeps no seed, so its ciphertexts carry
both polynomials. Here the site:

1. encrypts the chunk with TenSEAL as usual: ``(b, a)``, fresh SEAL noise ``e``;
2. draws a fresh public seed (64 bytes from the OS CSPRNG) and lets SEAL expand it into a
   uniform polynomial ``u`` by loading the seeded ciphertext ``(0, u)``;
3. decrypts ``(b, a) - (0, u)`` without decoding: ``b + (a - u) s = m + e - u s``, the first
   polynomial of an encryption of the same message under the same noise with ``u`` in place
   of ``a`` (all arithmetic is SEAL's; the secret key and noise never leave the library);
4. writes that polynomial and the seed in SEAL's own seeded serialisation (zstd-compressed,
   as SEAL and TenSEAL write theirs), inside TenSEAL's vector framing.

Step 3 is a standard symmetric encryption only because step 1 is one: the site's context is
made with ``ENCRYPTION_TYPE.SYMMETRIC`` (:func:`privacy.ckks.generate_keys`; it holds no public
key), so ``b = m + e - a s`` with fresh noise ``e`` independent of ``s``. A public-key
encryption's noise would carry a term in ``s``; :func:`encrypt_seeded` refuses such a context.

Anyone holding the encryption parameters loads the result with
``tenseal.ckks_vector_from``: SEAL expands the seed and the ciphertext is an ordinary one,
so the coordinator's add-only sum is unchanged. A sum is not seeded (it travels at full size).
"""

from __future__ import annotations

import functools
import os
import struct

import numpy as np
import tenseal as ts
import zstandard
from tenseal import _ts_cpp as _cpp

from common.errors import ErrorCode, TesseraError

#: SEAL's serialisation magic and header (``Serialization::SEALHeader``, 16 bytes).
_SEAL_MAGIC = 0xA15E
_HEADER = struct.Struct("<HBBBBHQ")
_COMPR_NONE = 0
_COMPR_ZSTD = 2
#: ``prng_type::blake2xb`` and SEAL's seed length (``prng_seed_byte_count``).
_PRNG_BLAKE2XB = 1
SEED_BYTES = 64
#: Ciphertext members before its data: parms_id, NTT flag, size, degree, primes, scale,
#: correction factor (``Ciphertext::save_members``, SEAL 4).
_MEMBERS = struct.Struct("<4QBQQQdQ")


def encrypt_seeded(context: ts.Context, values: list[float]) -> bytes:
    """One TenSEAL-loadable CKKS vector for ``values`` (at most ``slots``), seeded form."""
    _require_symmetric(context)
    full = ts.ckks_vector(context, values)
    (ciphertext,) = full.ciphertext()
    degree = ciphertext.poly_modulus_degree()
    primes = ciphertext.coeff_modulus_size()
    parms_id = tuple(ciphertext.parms_id())
    scale = float(ciphertext.scale)
    version = _seal_version()
    seed = os.urandom(SEED_BYTES)
    zero = np.zeros(degree * primes, dtype=np.uint64)
    uniform = ts.ckks_vector_from(
        context, _vector_bytes(len(values), _seeded_bytes(version, parms_id, degree, primes,
                                                          scale, zero, seed), scale))
    difference = full - uniform
    plain = _cpp.Plaintext()
    _decryptor(context).decrypt(difference.ciphertext()[0], plain)
    first = np.fromiter((plain[i] for i in range(degree * primes)), dtype=np.uint64,
                        count=degree * primes)
    return _vector_bytes(len(values),
                         _seeded_bytes(version, parms_id, degree, primes, scale, first, seed),
                         scale)


def _require_symmetric(context: ts.Context) -> None:
    """Refuse a context that encrypts with a public key (its noise is not independent of s)."""
    try:
        context.public_key()
    except ValueError:
        return  # "public_key is not supported for symmetric encryption"
    raise TesseraError(ErrorCode.CONFIG_INVALID,
                       "context: seeded ciphertexts need a symmetric-encryption context")


def _decryptor(context: ts.Context) -> _cpp.Decryptor:
    return _cpp.Decryptor(context.data.seal_context(), context.data.secret_key())


@functools.cache
def _seal_version() -> tuple[int, int]:
    """The SEAL version this TenSEAL build writes (read from one of its own ciphertexts)."""
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=4096,
                         coeff_mod_bit_sizes=[40, 20],
                         encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC)
    context.global_scale = 2.0**20
    (_, seal_bytes), = [f for f in _fields(ts.ckks_vector(context, [0.0]).serialize())
                        if f[0] == 2]
    magic, _, major, minor, _, _, _ = _HEADER.unpack_from(seal_bytes)
    if magic != _SEAL_MAGIC or major != 4:  # pragma: no cover (another TenSEAL build)
        raise RuntimeError("TenSEAL writes ciphertexts in a format other than SEAL 4's")
    return major, minor


def _frame(version: tuple[int, int], members: bytes, *, compress: bool) -> bytes:
    body = zstandard.ZstdCompressor(level=3).compress(members) if compress else members
    mode = _COMPR_ZSTD if compress else _COMPR_NONE
    return _HEADER.pack(_SEAL_MAGIC, _HEADER.size, version[0], version[1], mode, 0,
                        _HEADER.size + len(body)) + body


def _seeded_bytes(version: tuple[int, int], parms_id: tuple[int, ...], degree: int,
                  primes: int, scale: float, first: np.ndarray, seed: bytes) -> bytes:
    """SEAL's serialisation of a size-2 ciphertext stored as its first polynomial + seed."""
    members = _MEMBERS.pack(*parms_id, 1, 2, degree, primes, scale, 1)
    data = _frame(version, struct.pack("<Q", first.size) + first.astype("<u8").tobytes(),
                  compress=False)
    info = _frame(version, bytes([_PRNG_BLAKE2XB]) + seed, compress=False)
    return _frame(version, members + data + info, compress=True)


def _vector_bytes(size: int, seal_bytes: bytes, scale: float) -> bytes:
    """TenSEAL's ``CKKSVectorProto``: sizes (packed), ciphertexts, scale."""
    sizes = _varint(size)
    return (b"\x0a" + _varint(len(sizes)) + sizes
            + b"\x12" + _varint(len(seal_bytes)) + seal_bytes
            + b"\x19" + struct.pack("<d", scale))


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """Top-level length-delimited and 64-bit fields of a protobuf message."""
    fields: list[tuple[int, bytes]] = []
    index = 0
    while index < len(data):
        key, index = _read_varint(data, index)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, index = _read_varint(data, index)
            fields.append((number, data[index:index + length]))
            index += length
        elif wire == 1:
            fields.append((number, data[index:index + 8]))
            index += 8
        else:
            _, index = _read_varint(data, index)
    return fields


def _read_varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, index

"""Seeded symmetric CKKS ciphertexts: the compact form a site uploads.

This module owns how a site writes a chunk in the compact form of :mod:`privacy.he_compact`
(one bit-packed polynomial and a 32-byte seed: less than half the bytes of a TenSEAL
ciphertext). A fresh symmetric CKKS encryption is a pair ``(c0, c1)`` with ``c1`` uniformly
random and ``c0 = m + e - c1 * s``. TenSEAL's vector API keeps no seed, so the site:

1. encrypts the chunk with TenSEAL as usual: ``(b, a)``, fresh SEAL noise ``e``;
2. draws a fresh public seed (32 bytes from the OS CSPRNG) and expands it into a uniform
   polynomial ``u`` (:func:`privacy.he_compact.expand`), loaded into SEAL as ``(0, u)``;
3. decrypts ``(b, a) - (0, u)`` without decoding: ``b + (a - u) s = m + e - u s``, the first
   polynomial of an encryption of the same message under the same noise with ``u`` in place
   of ``a`` (all arithmetic is SEAL's; the secret key and noise never leave the library);
4. writes that polynomial and the seed in the compact form.

Step 3 is a standard symmetric encryption only because step 1 is one: the site's context is
made with ``ENCRYPTION_TYPE.SYMMETRIC`` (:func:`privacy.ckks.generate_keys`; it holds no public
key), so ``b = m + e - a s`` with fresh noise ``e`` independent of ``s``. A public-key
encryption's noise would carry a term in ``s``; :func:`encrypt_seeded` refuses such a context.

Anyone holding the encryption parameters reads the result (:func:`privacy.he_parse.load_chunk`
expands the seed; :func:`privacy.he_sum.add_encrypted` adds whole contributions as arrays).
A sum is not seeded: it travels as an ordinary TenSEAL vector.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import tenseal as ts
from tenseal import _ts_cpp as _cpp

from common.errors import ErrorCode, TesseraError
from privacy.he_compact import SEED_BYTES, encode, expand
from privacy.he_layout import layout_of, seal_vector, unframe_seal

__all__ = ["SEED_BYTES", "encrypt_seeded"]


def encrypt_seeded(context: ts.Context, values: list[float]) -> bytes:
    """One compact ciphertext for ``values`` (at most ``slots``)."""
    _require_symmetric(context)
    layout = layout_of(context)
    full = ts.ckks_vector(context, values)
    (ciphertext,) = full.ciphertext()
    if (tuple(ciphertext.parms_id()) != layout.parms_id
            or float(ciphertext.scale) != layout.scale):  # pragma: no cover (TenSEAL's own)
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "context: encrypts at another level or scale than its first")
    seed = os.urandom(SEED_BYTES)
    uniform = expand(seed, layout)
    loaded = ts.ckks_vector_from(
        context, seal_vector(len(values), np.zeros_like(uniform), uniform, layout))
    difference = full - loaded
    plain = _cpp.Plaintext()
    _decryptor(context).decrypt(difference.ciphertext()[0], plain)
    first = _coefficients(plain, uniform.size)
    return encode(len(values), seed, first.reshape(uniform.shape), layout)


def _coefficients(plain: _cpp.Plaintext, count: int) -> np.ndarray:
    """The ``count`` coefficients of ``plain`` (the first polynomial of the upload, public).

    TenSEAL exposes a plaintext's coefficients one Python call at a time (about 10 ms for
    8,192 of them) or its SEAL serialisation written to a path; on Linux the serialisation goes
    to an anonymous memory file and is read back as one array (about 1 ms).
    """
    if not hasattr(os, "memfd_create"):
        return np.fromiter((plain[i] for i in range(count)), dtype=np.uint64, count=count)
    descriptor = os.memfd_create("tessera-plaintext", os.MFD_CLOEXEC)
    try:
        plain.save(f"/proc/self/fd/{descriptor}")
        data = os.pread(descriptor, os.fstat(descriptor).st_size, 0)
    finally:
        os.close(descriptor)
    body = unframe_seal(data)
    # Plaintext members: parms_id (4 x u64), coefficient count (u64), scale (f64), then the
    # coefficients as a framed array: SEAL header, u64 length, the values.
    (stored,) = struct.unpack_from("<Q", body, 32)
    (length,) = struct.unpack_from("<Q", body, 48 + 16)
    if stored != count or length != count or len(body) != 48 + 24 + 8 * count:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "context: decrypted an unexpected number of coefficients")
    return np.frombuffer(body, dtype="<u8", count=count, offset=48 + 24).astype(np.uint64)


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

"""Cryptographically secure randomness for DP-SGD: Gaussian noise and Poisson sampling.

This module owns every random draw that the privacy guarantee of DP-SGD rests on. They all
come from a **ChaCha20 keystream** (RFC 8439, through ``cryptography``) keyed with 256 fresh
secret bits per site and run (:func:`new_key`, ``secrets.token_bytes(32)``); two streams of
one key are separated by their nonce (one for the noise, one for the sampling), so neither
reveals the other. Whoever lacks the key cannot predict or reproduce a single draw; torch's
and numpy's generators (Mersenne Twister, PCG64) are never used for them.

- **Uniforms**: each 64-bit little-endian keystream word ``w`` gives ``(w >> 11) / 2**53``,
  an exact float64 on the 2**-53 grid of [0, 1).
- **Normals** (:meth:`SecureGaussian.standard_normal`): Box-Muller in float64 on pairs of
  uniforms, ``u1 = ((w1 >> 11) + 1) / 2**53`` in (0, 1] and ``u2`` in [0, 1):
  ``sqrt(-2 ln u1) * (cos 2 pi u2, sin 2 pi u2)``.
- **Floating-point attack mitigation** (:meth:`SecureGaussian.noise`): as Opacus's
  ``secure_mode`` (Holohan & Braghin 2021, section 5.1, n = 2), each noise value is the sum
  of four independent normals of the target standard deviation divided by two (the same
  distribution, N(0, std**2)); the gaps that let an attacker invert one floating-point
  normal back to its uniforms no longer identify the draw.
- **Poisson sampling** (:class:`SecurePoissonSampler`): example ``i`` joins a batch when its
  word is below ``floor(sample_rate * 2**64)``, so the real rate never exceeds the planned
  one (the accountant's figure stays an upper bound).
"""

from __future__ import annotations

import math
import secrets

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from common.errors import ErrorCode, TesseraError

#: Bytes of a fresh key (256 bits).
KEY_BYTES = 32
#: Fewest secret bytes a key may have (128 bits).
MIN_KEY_BYTES = 16
#: Normals summed into one noise value, and the divisor that keeps the variance (n = 2).
_DRAWS_PER_VALUE = 4
_DRAWS_SCALE = 2.0

_NOISE_NONCE = b"dpsgd-noise\x00"
_SAMPLING_NONCE = b"dpsgd-sample"
_TWO_POW_53 = float(2**53)
_TWO_POW_64 = 2**64


def new_key() -> bytes:
    """256 fresh secret bits from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def check_key(key: object) -> bytes:
    """``key`` as bytes if it holds at least 128 bits, else a :class:`TesseraError`."""
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"noise_key: must be at least {MIN_KEY_BYTES} secret bytes",
        )
    return bytes(key)


class ChaChaStream:
    """One ChaCha20 keystream read as 64-bit words (never re-read, never rewound)."""

    def __init__(self, key: bytes, *, nonce: bytes) -> None:
        key = check_key(key)
        if len(key) != KEY_BYTES:
            # A 128-bit (or longer) secret is hashed to ChaCha20's 256-bit key.
            digest = hashes.Hash(hashes.SHA256())
            digest.update(b"tessera dp-sgd key\x00" + key)
            key = digest.finalize()
        if len(nonce) != 12:
            raise ValueError("nonce must be 12 bytes")
        counter = (0).to_bytes(4, "little")
        self._encryptor = Cipher(algorithms.ChaCha20(key, counter + nonce), mode=None).encryptor()

    def words(self, count: int) -> np.ndarray:
        """The next ``count`` keystream words as uint64."""
        block = bytearray(8 * count)
        self._encryptor.update_into(bytes(8 * count), block)
        return np.frombuffer(block, dtype="<u8").astype(np.uint64, copy=False)

    def uniforms(self, count: int) -> np.ndarray:
        """``count`` float64 uniforms on the 2**-53 grid of [0, 1)."""
        return (self.words(count) >> np.uint64(11)).astype(np.float64) / _TWO_POW_53


class SecureGaussian:
    """Gaussian noise from the noise stream of ``key`` (see the module notes)."""

    def __init__(self, key: bytes) -> None:
        self._stream = ChaChaStream(key, nonce=_NOISE_NONCE)

    def standard_normal(self, count: int) -> np.ndarray:
        """``count`` float64 standard normals (Box-Muller on keystream uniforms)."""
        pairs = (count + 1) // 2
        words = self._stream.words(2 * pairs) >> np.uint64(11)
        u1 = (words[:pairs].astype(np.float64) + 1.0) / _TWO_POW_53  # (0, 1]: log is finite
        u2 = words[pairs:].astype(np.float64) / _TWO_POW_53
        radius = np.sqrt(-2.0 * np.log(u1))
        angle = 2.0 * math.pi * u2
        return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]

    def noise(self, count: int, *, std: float) -> np.ndarray:
        """``count`` float64 draws of N(0, std**2), each the sum of four normals over two."""
        if not math.isfinite(std) or std < 0:
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"std: must be >= 0, got {std!r}")
        if count == 0 or std == 0:
            return np.zeros(count)
        draws = self.standard_normal(_DRAWS_PER_VALUE * count).reshape(_DRAWS_PER_VALUE, count)
        return draws.sum(axis=0) * (std / _DRAWS_SCALE)


class SecurePoissonSampler:
    """Poisson batches: each of ``n`` examples joins each batch independently at ``rate``."""

    def __init__(self, key: bytes, *, n: int, sample_rate: float) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"n: must be an integer >= 1, got {n!r}")
        if not 0 < sample_rate <= 1:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID, f"sample_rate: must be in (0, 1], got {sample_rate!r}"
            )
        self._stream = ChaChaStream(key, nonce=_SAMPLING_NONCE)
        self._n = n
        # floor(q * 2**64): q * 2**64 is exact in binary floating point, int() floors it.
        self._threshold = None if sample_rate >= 1 else int(sample_rate * _TWO_POW_64)

    def batch(self) -> np.ndarray:
        """Indices (int64, ascending) of the examples in the next batch."""
        words = self._stream.words(self._n)
        if self._threshold is None:
            return np.arange(self._n, dtype=np.int64)
        return np.flatnonzero(words < np.uint64(self._threshold)).astype(np.int64)

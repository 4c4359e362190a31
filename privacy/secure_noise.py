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
- **Poisson sampling** (:class:`SecurePoissonSampler`): each example joins each batch
  independently with probability exactly ``sample_rate`` (``q``). Rather than one draw per
  example, the sampler draws the **gaps** between chosen examples, which are i.i.d.
  Geometric(q) (``P(G >= k) = (1 - q)**k``), by inversion: ``G = floor(ln U / ln(1 - q))``
  for a uniform ``U`` in (0, 1] (drawn about sixteen batches ahead; the gap that passes the
  last row is spent), so a step costs about ``q * n + 1`` keystream words instead of ``n``.
  ``U`` is a real number whose binary digits are keystream bits, read 64 at a time as
  needed: the first word ``w`` places it in ``(w / 2**64, (w + 1) / 2**64]``. float64
  (``log1p`` for ``ln(1 - q)``) gives ``G`` with an error bound (each rounding taken at
  4 ulp); whenever that bound does not settle ``G`` (about ``3e-11 / q`` of the gaps, and
  every gap with ``w < 2**40``, one in 16 million) the gap is decided in exact integer
  arithmetic, refining ``U`` with further words until ``U <= (1 - q)**k`` is certain either
  way (:func:`_exact_gap`). So the batches have exactly the distribution of ``n``
  independent Bernoulli(q) trials, with no floating-point deviation, and the accountant's
  rate is the real one. Sample rate 1 takes every example.
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
_TWO_POW_MINUS_64 = 2.0**-64
#: Words below this (U < 2**-24, one gap in 16 million) are always decided exactly.
_SETTLED_WORD = np.uint64(2**40)


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
        # (w >> 11) / 2**53 for every word, exactly (a power of two scales without rounding).
        uniforms = (self._stream.words(2 * pairs) >> np.uint64(11)).astype(np.float64)
        uniforms *= 1.0 / _TWO_POW_53
        u1 = uniforms[:pairs]
        u1 += 1.0 / _TWO_POW_53  # ((w >> 11) + 1) / 2**53, exactly: (0, 1], log is finite
        radius = np.sqrt(-2.0 * np.log(u1))
        angle = 2.0 * math.pi * uniforms[pairs:]
        out = np.empty(2 * pairs)
        np.multiply(radius, np.cos(angle), out=out[:pairs])
        np.multiply(radius, np.sin(angle), out=out[pairs:])
        return out[:count]

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
        self._rate = float(sample_rate)
        self._log_keep = math.log1p(-self._rate) if self._rate < 1 else -math.inf  # ln(1 - q)
        # Float64 settles a gap when its first word w is at least 2**40 (U >= 2**-24) and
        # x = ln u / ln(1 - q) is farther than this from an integer: over that range the
        # cell's width (2**-64 / U <= 2**-40 relative) and the roundings of w, ln, ln(1 - q)
        # and the division (4 ulp each, |ln u| <= 16.7) move x by at most
        # 4 * (2**-39 + 34.3 * 2**-51) / -ln(1 - q), about half of this.
        self._tolerance = 2.0**-36 / -self._log_keep
        expected = n * self._rate
        # Gaps drawn per read of the stream: about 16 batches' worth. Unused gaps wait for the
        # next batch; each is used once, so batches stay independent.
        self._words_per_read = 16 * int(expected + 4 * math.sqrt(expected) + 8)
        self._ends = np.zeros(0, dtype=np.int64)  # cumulative (gap + 1) of the drawn gaps
        self._next = 0  # the first unused gap

    def batch(self) -> np.ndarray:
        """Indices (int64, ascending) of the examples in the next batch."""
        if self._rate >= 1:
            return np.arange(self._n, dtype=np.int64)
        found: list[np.ndarray] = []
        row = 0  # the first row not yet decided
        while True:
            if self._next == len(self._ends):
                self._ends = np.cumsum(self.gaps(self._stream.words(self._words_per_read)) + 1)
                self._next = 0
            ends, first = self._ends, self._next
            before = int(ends[first - 1]) if first else 0
            # Gap j chooses row ends[j] - before - 1 + row; the first gap past the last row
            # ends the batch and is spent.
            stop = int(np.searchsorted(ends, before + self._n - row, side="right"))
            found.append(ends[first:stop] - (before + 1 - row))
            if stop < len(ends):
                self._next = stop + 1
                return found[0] if len(found) == 1 else np.concatenate(found)
            row += int(ends[-1]) - before
            self._next = len(ends)

    def gaps(self, words: np.ndarray) -> np.ndarray:
        """The Geometric(q) gaps (int64, capped at ``n``) that keystream ``words`` start.

        Each gap's ``U`` starts with its word; the rare gap that float64 cannot settle draws
        further words from the sampling stream (see the module notes).
        """
        n, tolerance = self._n, self._tolerance
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            u = (words.astype(np.float64) + 0.5) * _TWO_POW_MINUS_64  # within U's cell
            x = np.minimum(np.log(u) / self._log_keep, 2.0 * n)  # G = floor(exact x)
            whole = np.floor(x)
            part = x - whole
            settled = (part > tolerance) & (part < 1.0 - tolerance) & (words >= _SETTLED_WORD)
            settled |= x - tolerance >= n  # G >= n either way: past the last row
        gaps = np.minimum(whole, n).astype(np.int64)
        for i in np.flatnonzero(~settled):
            gaps[i] = _exact_gap(int(words[i]), self._rate, n=n, stream=self._stream)
        return gaps


def _exact_gap(word: int, rate: float, *, n: int, stream: ChaChaStream) -> int:
    """``min(G, n)`` for the ``U`` that starts with ``word``, decided exactly.

    ``G >= k`` exactly when ``U <= (1 - q)**k``; a binary search over ``k`` in ``[0, n]``
    compares ``U``'s cell ``(a / 2**b, (a + 1) / 2**b]`` with ``(1 - q)**k`` computed in
    fixed point to ``p`` bits, truncated at each of its multiplications (so at most ``k``
    units of ``2**-p`` low), and refines the cell with the next keystream word, at a higher
    precision, until the comparison is certain.
    """
    numerator, denominator = rate.as_integer_ratio()  # q = M / 2**e exactly
    exponent = denominator.bit_length() - 1
    cell = [word, 64]

    def at_most(k: int) -> bool:  # U <= (1 - q)**k
        while True:
            a, b = cell
            p = exponent + b + k.bit_length() + 64
            power = _fixed_power((denominator - numerator) << (p - exponent), k, bits=p)
            if (a + 1) << (p - b) <= power:
                return True
            if a << (p - b) >= power + k:
                return False
            cell[0], cell[1] = (a << 64) | int(stream.words(1)[0]), b + 64

    low, high = 0, n
    while low < high:
        middle = (low + high + 1) // 2
        if at_most(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _fixed_power(base: int, k: int, *, bits: int) -> int:
    """``(base / 2**bits)**k * 2**bits``, each product truncated (at most ``k`` units low)."""
    result = 1 << bits
    while k:
        if k & 1:
            result = (result * base) >> bits
        k >>= 1
        if k:
            base = (base * base) >> bits
    return result

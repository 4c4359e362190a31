"""Noise flooding and rounding of decrypted CKKS values before they leave a site.

A CKKS decryption returns ``m + e``: the message plus a small error that depends on the secret
key. Returned unrounded, ``e`` lets whoever knows the ciphertext solve for the key (Li and
Micciancio 2021). A site therefore releases a decrypted real value only after adding Gaussian
*flooding* noise far larger than the error, then rounding it to the plan's precision;
whole-number quantities (counts) are only rounded, which maps ``m + e`` to ``m`` exactly while
``|e| < 1/2``.

The rule (docs/security.md): the decryption error of one slot of a sum of ``k`` fresh
symmetric encryptions has standard deviation ``3.2 * sqrt(N / 2) * sqrt(k) / 2**scale`` (ring
degree ``N``; measured values agree, see tests). :func:`error_bound` takes eight such standard
deviations plus the encoding rounding. For ``s`` bits of statistical security over ``m``
released slots, the flooding noise has standard deviation
``sigma = 2**(s/2) * sqrt(m) * 2B``: the Kullback-Leibler divergence between the released
distributions under any two error vectors within the bound is then at most
``m * (2B)**2 / (2 sigma**2) = 2**-(s+1)`` (Micciancio and Walter 2018 show that a divergence
of ``2**-s`` keeps ``s``-bit security for search problems such as key recovery; Li,
Micciancio, Schultz and Sorrell 2022 apply this to CKKS).
Noise comes from the operating system's CSPRNG.
"""

from __future__ import annotations

import math
import os

import numpy as np

from common.errors import ErrorCode, TesseraError
from privacy.ckks import CkksParams

#: Statistical security of released decryptions, in bits.
FLOODING_SECURITY_BITS = 40
#: Standard deviation of the fresh encryption error's coefficients (SEAL's default).
_SEAL_NOISE_STD = 3.2
#: Tail factor: the bound holds for eight standard deviations of each slot's error.
_TAIL = 8.0


def error_bound(params: CkksParams, *, contributors: int) -> float:
    """A bound on one slot's decryption error for a sum of ``contributors`` encryptions."""
    if not isinstance(contributors, int) or contributors < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "contributors: must be an integer >= 1")
    slot_std = _SEAL_NOISE_STD * math.sqrt(params.poly_modulus_degree / 2)
    encode = 0.5 * math.sqrt(params.poly_modulus_degree / 2)  # rounding to integers
    per_slot = (_TAIL * slot_std + encode) * math.sqrt(contributors)
    return per_slot / 2.0 ** params.global_scale_bits


def flooding_sigma(params: CkksParams, *, contributors: int, released: int,
                   security_bits: int = FLOODING_SECURITY_BITS) -> float:
    """Standard deviation of the flooding noise for ``released`` slots of a decrypted sum."""
    if released < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "released: must be at least 1")
    bound = error_bound(params, contributors=contributors)
    return 2.0 ** (security_bits / 2) * math.sqrt(released) * 2.0 * bound


def secure_normal(size: int) -> np.ndarray:
    """``size`` standard normal draws (float64) from the operating system's CSPRNG
    (Box-Muller over 53-bit uniforms in (0, 1])."""
    words = np.frombuffer(os.urandom(16 * size), dtype="<u8").reshape(2, size)
    uniform = ((words >> np.uint64(11)).astype(np.float64) + 1.0) / 2.0**53
    radius = np.sqrt(-2.0 * np.log(uniform[0]))
    return radius * np.cos(2.0 * math.pi * uniform[1])


def flood(values: np.ndarray, *, sigma: float) -> np.ndarray:
    """``values`` plus Gaussian noise of standard deviation ``sigma`` from the CSPRNG."""
    values = np.asarray(values, dtype=np.float64)
    return values + sigma * secure_normal(values.size).reshape(values.shape)


def flood_and_round(values: np.ndarray, *, sigma: float, decimals: int) -> np.ndarray:
    """Add Gaussian noise of ``sigma`` from the CSPRNG, then round to ``decimals``."""
    return np.round(flood(values, sigma=sigma), decimals)


def round_counts(values: np.ndarray, *, tolerance: float = 0.01) -> np.ndarray:
    """Whole numbers from decrypted counts; BAD_CIPHERTEXT if a value is not within
    ``tolerance`` of a non-negative whole number (not an honest sum of counts)."""
    values = np.asarray(values, dtype=np.float64)
    rounded = np.round(values)
    if values.size and (np.abs(values - rounded).max() > tolerance or rounded.min() < 0):
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                           "decrypted counts are not whole numbers: not an honest sum")
    return rounded

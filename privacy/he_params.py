"""The CKKS parameter rule: the smallest secure parameters that carry a study's sums.

This module owns the choice of CKKS parameters from what a study encrypts
(docs/he-parameters.md): how many values one update holds, how many sites add theirs, the
largest magnitude one site encrypts and the absolute precision the decrypted sum needs.

The rule, for each ring degree ``N`` of :data:`privacy.ckks.MAX_COEFF_BITS` from the smallest:

1. **precision** sets the scale: the smallest ``scale_bits`` (at least
   :data:`MIN_SCALE_BITS`) whose decryption-error bound for a sum of ``contributors``
   encryptions (:func:`privacy.flooding.error_bound`, eight standard deviations) is at most
   ``precision``;
2. **headroom** sets the data modulus: ``scale_bits + ceil(log2(max_abs * contributors))``
   plus :data:`privacy.ckks.HEADROOM_SAFETY_BITS` plus one bit per data prime plus one (the
   margin :func:`privacy.ckks.headroom_bound` assumes), split into as few primes of at most
   60 bits as possible (the first as large as possible, so the largest is above the scale);
3. **security**: a special prime of :data:`SPECIAL_PRIME_BITS` bits (sums never switch keys,
   so its size only has to satisfy SEAL) joins the chain, and the whole chain must fit the
   128-bit bound of the HE standard for ``N``; the first ``N`` that fits is chosen, unless a
   larger one needs fewer bytes for ``values`` (fewer, fuller ciphertexts).

The bytes of one uploaded ciphertext are about ``N (data bits) / 8`` (seeded form,
:mod:`privacy.he_seeded`: one polynomial of ``N`` coefficients per data prime), so the bytes
per value hardly depend on ``N``: a small ring helps a small model (one
ciphertext of a few thousand slots instead of a mostly empty large one), and the data bits,
set by precision and headroom, decide the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.errors import ErrorCode, TesseraError
from privacy.ckks import HEADROOM_SAFETY_BITS, MAX_COEFF_BITS, CkksParams, headroom_bound
from privacy.flooding import error_bound

#: Finest scale the rule uses (below it CKKS encoding rounds away too much).
MIN_SCALE_BITS = 20
#: Bits of the special prime: sums never switch keys, so it only has to be a valid prime.
SPECIAL_PRIME_BITS = 20
#: Largest prime SEAL generates.
MAX_PRIME_BITS = 60
#: Bytes of a ciphertext's framing (TenSEAL's and SEAL's headers), measured.
_FRAME_BYTES = 200


@dataclass(frozen=True)
class HeChoice:
    """Parameters chosen by :func:`choose_params`, with the figures they were chosen for."""

    params: CkksParams
    ciphertexts: int
    estimated_bytes: int
    error_bound: float
    headroom: float


def choose_params(
    *, values: int, contributors: int, max_abs: float, precision: float
) -> HeChoice:
    """The smallest 128-bit-secure CKKS parameters for sums of ``values``-long vectors."""
    for name, number in (("values", values), ("contributors", contributors)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"{name}: must be an integer >= 1, got {number!r}")
    for name, real in (("max_abs", max_abs), ("precision", precision)):
        if (isinstance(real, bool) or not isinstance(real, int | float)
                or not math.isfinite(real) or real <= 0):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"{name}: must be a finite number > 0, got {real!r}")
    candidates = [c for degree in sorted(MAX_COEFF_BITS)
                  if (c := _candidate(degree, values=values, contributors=contributors,
                                      max_abs=float(max_abs), precision=float(precision)))]
    if not candidates:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"precision: no 128-bit-secure CKKS parameters reach {precision:g} on a sum of "
            f"{contributors} values of magnitude {max_abs:g}; relax the precision or clip harder",
        )
    return min(candidates, key=lambda c: (c.estimated_bytes, c.params.poly_modulus_degree))


def _candidate(degree: int, *, values: int, contributors: int, max_abs: float,
               precision: float) -> HeChoice | None:
    # error_bound depends only on the ring degree and is linear in 2**-scale: solve for it.
    probe = CkksParams(poly_modulus_degree=degree, coeff_mod_bit_sizes=(30, 20),
                       global_scale_bits=MIN_SCALE_BITS)
    unit = error_bound(probe, contributors=contributors) * 2.0**MIN_SCALE_BITS
    scale = max(MIN_SCALE_BITS, math.ceil(math.log2(unit / precision)))
    magnitude = max(0, math.ceil(math.log2(max_abs * contributors)))
    for primes in range(1, 8):
        data = scale + magnitude + HEADROOM_SAFETY_BITS + primes + 1
        sizes = _split(data, primes)
        if sizes is None:
            continue
        if max(sizes) <= scale or sum(sizes) + SPECIAL_PRIME_BITS > MAX_COEFF_BITS[degree]:
            return None
        params = CkksParams(poly_modulus_degree=degree,
                            coeff_mod_bit_sizes=(*sizes, SPECIAL_PRIME_BITS),
                            global_scale_bits=scale)
        slots = degree // 2
        count = -(-values // slots)
        size = count * (degree * sum(sizes) // 8 + _FRAME_BYTES)
        return HeChoice(params, count, size, error_bound(params, contributors=contributors),
                        headroom_bound(params, contributors=contributors))
    return None


def _split(total: int, primes: int) -> tuple[int, ...] | None:
    """``total`` bits over ``primes`` primes of 20 to 60 bits, the first ones as large as
    possible (so that the largest prime stays above the scale)."""
    if total > primes * MAX_PRIME_BITS or total < primes * 20:
        return None
    sizes: list[int] = []
    remaining = total
    for index in range(primes):
        later = primes - index - 1
        take = min(MAX_PRIME_BITS, remaining - 20 * later)
        sizes.append(take)
        remaining -= take
    return tuple(sizes)

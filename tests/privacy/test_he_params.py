"""The CKKS parameter rule picks the smallest 128-bit-secure parameters that carry a study's
sums: a hundred-site mean decrypts exact to 1e-6 relative, a sum at the chosen headroom
never wraps, and every choice is one SEAL accepts at 128-bit security."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ErrorCode, TesseraError
from privacy.ckks import (
    MAX_COEFF_BITS,
    add_encrypted,
    check_headroom,
    decrypt_vector,
    encrypt_vector,
    generate_keys,
)
from privacy.he_params import choose_params


@pytest.mark.parametrize(
    ("values", "contributors", "max_abs", "precision"),
    [(31, 3, 1.0, 1e-4), (31, 100, 1e4, 1e-6), (100_000, 100, 1.0, 1e-6),
     (31, 1000, 1e6, 1e-6), (5, 2, 1e-3, 1e-2)],
)
def test_every_choice_fits_the_128_bit_table(
    values: int, contributors: int, max_abs: float, precision: float
) -> None:
    choice = choose_params(values=values, contributors=contributors, max_abs=max_abs,
                           precision=precision)
    params = choice.params
    assert sum(params.coeff_mod_bit_sizes) <= MAX_COEFF_BITS[params.poly_modulus_degree]
    assert choice.error_bound <= precision
    assert choice.headroom >= max_abs
    assert choice.ciphertexts == -(-values // params.slots)
    generate_keys(params)  # SEAL (at its default 128-bit level) accepts the chain


def test_modulus_bits_follow_precision_and_magnitude() -> None:
    choice = choose_params(values=31, contributors=100, max_abs=10.0, precision=1e-6)
    params = choice.params
    # Looser requirements never need more modulus bits.
    loose = choose_params(values=31, contributors=3, max_abs=10.0, precision=1e-3).params
    assert sum(loose.coeff_mod_bit_sizes) < sum(params.coeff_mod_bit_sizes)
    # A hundred times the magnitude needs ceil(log2(100)) = 7 more bits of headroom, plus
    # one if the data bits then need one more prime.
    wide = choose_params(values=31, contributors=100, max_abs=1e3, precision=1e-6).params
    grown = sum(wide.coeff_mod_bit_sizes) - sum(params.coeff_mod_bit_sizes)
    extra_primes = len(wide.coeff_mod_bit_sizes) - len(params.coeff_mod_bit_sizes)
    assert grown == 7 + extra_primes


def test_a_hundred_site_mean_is_exact_to_one_in_a_million() -> None:
    rng = np.random.default_rng(5)
    sites, length, clip = 100, 3000, 1.0
    counts = rng.integers(50, 501, size=sites).astype(np.float64)
    updates = np.clip(rng.normal(0.0, 0.5, size=(sites, length)), -clip, clip)
    updates[:, 0] = clip  # the mean of one slot is far from zero: relative error is meaningful
    max_abs = float(counts.max()) * clip
    mean = (counts[:, None] * updates).sum(axis=0) / counts.sum()
    # Relative 1e-6 of the mean's smallest interesting magnitude (1e-3), on the sum.
    precision = 1e-6 * 1e-3 * float(counts.sum())
    choice = choose_params(values=length, contributors=sites, max_abs=max_abs,
                           precision=precision)
    check_headroom(choice.params, max_abs=max_abs, contributors=sites)
    keys = generate_keys(choice.params)
    uploads = [encrypt_vector(keys.secret_context, c * u)
               for c, u in zip(counts, updates, strict=True)]
    total = add_encrypted(keys.evaluation_context, uploads)
    decrypted = decrypt_vector(keys.secret_context, total, length=length) / counts.sum()
    error = np.abs(decrypted - mean)
    assert float(error.max()) <= 1e-9
    assert float(error[0] / abs(mean[0])) <= 1e-6


def test_a_sum_at_the_chosen_headroom_does_not_wrap_and_beyond_it_is_refused() -> None:
    sites = 50
    choice = choose_params(values=8, contributors=sites, max_abs=1e3, precision=1e-3)
    keys = generate_keys(choice.params)
    top = choice.headroom
    # Independent encryptions, as sites make them (the error bound assumes independence).
    uploads = [encrypt_vector(keys.secret_context, np.full(8, top)) for _ in range(sites)]
    total = add_encrypted(keys.evaluation_context, uploads)
    decrypted = decrypt_vector(keys.secret_context, total, length=8)
    np.testing.assert_allclose(decrypted, sites * top, rtol=0, atol=choice.error_bound)
    with pytest.raises(TesseraError) as info:
        check_headroom(choice.params, max_abs=top * 1.01, contributors=sites)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    # What the refusal protects against is real: far past the headroom the sum wraps.
    far = encrypt_vector(keys.secret_context, np.full(8, top * 2.0**13))
    wrapped = decrypt_vector(keys.secret_context,
                             add_encrypted(keys.evaluation_context, [far] * sites), length=8)
    assert not np.allclose(wrapped, sites * top * 2.0**13, rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"values": 0}, "values"), ({"contributors": 1.5}, "contributors"),
     ({"max_abs": float("inf")}, "max_abs"), ({"precision": 0.0}, "precision"),
     ({"precision": 1e-30}, "precision")],
)
def test_bad_or_unreachable_requirements_are_refused(kwargs: dict[str, object],
                                                     name: str) -> None:
    given: dict[str, object] = {"values": 31, "contributors": 10, "max_abs": 1.0,
                                "precision": 1e-6, **kwargs}
    with pytest.raises(TesseraError) as info:
        choose_params(**given)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith(name)

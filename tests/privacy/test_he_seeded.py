"""Sites upload seeded symmetric ciphertexts: about half the bytes of a TenSEAL ciphertext,
loaded and added by the coordinator's key-free context, decrypted exactly, and fresh each
time (a new public seed and new noise per encryption)."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from common.errors import ErrorCode, TesseraError
from privacy.ckks import (
    CkksKeys,
    CkksParams,
    add_encrypted,
    decrypt_vector,
    encrypt_vector,
    generate_keys,
)
from privacy.he_compact import HEADER_BYTES
from privacy.he_params import choose_params
from privacy.he_seeded import SEED_BYTES, encrypt_seeded

#: The reference workload of docs/he-parameters.md: 100 sites, magnitudes up to 5,000
#: (500 examples x clip 10), sums exact to 1e-4.
REFERENCE = {"contributors": 100, "max_abs": 5000.0, "precision": 1e-4}


@pytest.fixture(scope="module")
def small_keys() -> CkksKeys:
    return generate_keys(choose_params(values=31, **REFERENCE).params)  # type: ignore[arg-type]


def _tenseal_bytes(keys: CkksKeys, values: np.ndarray) -> int:
    """Bytes of the same chunk as TenSEAL serialises it (both polynomials)."""
    context = ts.context_from(keys.secret_context)
    return len(ts.ckks_vector(context, values.tolist()).serialize())


def test_a_31_value_update_fits_in_32_kb_and_halves_tenseal(small_keys: CkksKeys) -> None:
    values = np.linspace(-5000, 5000, 31)
    (chunk,) = encrypt_vector(small_keys.secret_context, values)
    # Measured 32,031 bytes at N = 4096, one 58-bit data prime (TenSEAL: 63,717).
    assert len(chunk) <= 32_768
    assert len(chunk) <= 0.52 * _tenseal_bytes(small_keys, values)


def test_a_100k_value_update_is_at_most_four_times_its_float32_bytes() -> None:
    params = choose_params(values=100_000, **REFERENCE).params  # type: ignore[arg-type]
    keys = generate_keys(params)
    values = np.clip(np.random.default_rng(2).normal(0, 6, 100_000), -10, 10) * 500
    chunks = encrypt_vector(keys.secret_context, values)
    ratio = sum(len(c) for c in chunks) / (4 * values.size)
    assert ratio <= 4.0  # measured 3.92
    assert np.allclose(decrypt_vector(keys.secret_context, chunks, length=values.size),
                       values, rtol=0, atol=1e-4)


def test_the_coordinator_context_adds_seeded_uploads_exactly(small_keys: CkksKeys) -> None:
    rng = np.random.default_rng(3)
    sites = [rng.uniform(-5000, 5000, 31) for _ in range(100)]
    total = add_encrypted(small_keys.evaluation_context,
                          (encrypt_vector(small_keys.secret_context, v) for v in sites))
    decrypted = decrypt_vector(small_keys.secret_context, total, length=31)
    expected = np.sum(sites, axis=0)
    assert float(np.max(np.abs(decrypted - expected))) <= 1e-4
    assert float(np.max(np.abs(decrypted - expected) / np.abs(expected))) <= 1e-6


def test_each_encryption_is_fresh(small_keys: CkksKeys) -> None:
    values = np.ones(31)
    first = encrypt_vector(small_keys.secret_context, values)[0]
    second = encrypt_vector(small_keys.secret_context, values)[0]
    assert first != second
    # The random polynomial is expanded from a fresh 32-byte seed each time, carried in the
    # header of the compact form.
    seeds = {_seed_of(first), _seed_of(second)}
    assert len(seeds) == 2 and all(len(seed) == SEED_BYTES for seed in seeds)


def _seed_of(chunk: bytes) -> bytes:
    assert chunk[:4] == b"TSC1"
    return chunk[HEADER_BYTES - SEED_BYTES:HEADER_BYTES]


def test_a_changed_seed_no_longer_decrypts_to_the_values(small_keys: CkksKeys) -> None:
    values = np.linspace(-1, 1, 31)
    (chunk,) = encrypt_vector(small_keys.secret_context, values)
    # Flip one bit of the seed: the second polynomial is expanded from it.
    tampered = bytearray(chunk)
    tampered[HEADER_BYTES - 5] ^= 0x01
    try:
        opened = decrypt_vector(small_keys.secret_context, [bytes(tampered)], length=31)
    except TesseraError as exc:
        assert exc.code is ErrorCode.BAD_CIPHERTEXT
    else:
        assert float(np.max(np.abs(opened - values))) > 1.0


def test_seeded_uploads_of_another_key_are_refused_at_the_sum(small_keys: CkksKeys) -> None:
    other = generate_keys(CkksParams(8192, (60, 50, 60), global_scale_bits=50))
    foreign = encrypt_vector(other.secret_context, np.ones(31))
    own = encrypt_vector(small_keys.secret_context, np.ones(31))
    with pytest.raises(TesseraError) as info:
        add_encrypted(small_keys.evaluation_context, [own, foreign])
    assert info.value.code is ErrorCode.BAD_CIPHERTEXT


def test_a_public_key_context_is_refused_for_seeded_ciphertexts() -> None:
    # A public-key encryption's noise holds a term in the secret key: the seeded rewrite is
    # only a standard symmetric ciphertext when the first encryption is symmetric.
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=4096,
                         coeff_mod_bit_sizes=[40, 20])
    context.global_scale = 2.0**20
    with pytest.raises(TesseraError, match="symmetric"):
        encrypt_seeded(context, [1.0, 2.0])

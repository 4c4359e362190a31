"""Behaviour of the CKKS codec: keys, chunked encryption, encrypted weighted sums, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from common.errors import ErrorCode, TesseraError
from privacy.ckks import (
    CkksKeys,
    CkksParams,
    add_encrypted,
    can_decrypt,
    can_encrypt,
    check_headroom,
    decrypt_vector,
    encrypt_vector,
    fingerprint_of_secret,
    generate_keys,
    headroom_bound,
)
from privacy.he_compact import layout_of
from privacy.he_parse import load_context

CLIP = 10.0


@pytest.fixture(scope="module")
def keys() -> CkksKeys:
    return generate_keys(CkksParams())


def _weighted_round(
    keys: CkksKeys, *, sites: int, length: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sites pre-scale clipped updates by their example counts, the server adds ciphertexts,
    a site decrypts and divides by the weight total. Returns (decrypted mean, numpy mean)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(50, 501, size=sites)
    updates = np.clip(rng.normal(0.0, 6.0, size=(sites, length)), -CLIP, CLIP)
    check_headroom(CkksParams(), max_abs=float(counts.max()) * CLIP, contributors=sites)

    uploads = [
        encrypt_vector(keys.secret_context, count * update)
        for count, update in zip(counts, updates, strict=True)
    ]
    total = add_encrypted(keys.evaluation_context, uploads)
    mean = decrypt_vector(keys.secret_context, total, length=length) / counts.sum()

    expected = (counts[:, None] * updates).sum(axis=0) / counts.sum()
    return mean, expected


def test_weighted_sum_of_three_sites_matches_numpy(keys: CkksKeys) -> None:
    # 9,000 values: three chunks of at most 4,096, the last one partial.
    mean, expected = _weighted_round(keys, sites=3, length=9_000, seed=1)

    assert mean.dtype == np.float64
    assert mean.shape == (9_000,)
    assert np.max(np.abs(mean - expected)) < 1e-4


def test_weighted_sum_of_a_hundred_sites_matches_numpy(keys: CkksKeys) -> None:
    mean, expected = _weighted_round(keys, sites=100, length=300, seed=2)

    assert np.max(np.abs(mean - expected)) < 1e-4


def test_vectors_are_chunked_by_slot_count(keys: CkksKeys) -> None:
    values = np.arange(10_000, dtype=np.float64) / 1000
    chunks = encrypt_vector(keys.secret_context, values)

    assert CkksParams().slots == 4096
    assert len(chunks) == 3
    np.testing.assert_allclose(
        decrypt_vector(keys.secret_context, chunks, length=10_000), values, atol=1e-6
    )
    np.testing.assert_allclose(
        decrypt_vector(keys.secret_context, chunks, length=5), values[:5], atol=1e-6
    )


def test_evaluation_context_can_add_but_neither_decrypt_nor_encrypt(keys: CkksKeys) -> None:
    assert can_decrypt(keys.evaluation_context) is False
    assert can_encrypt(keys.evaluation_context) is False
    loaded = ts.context_from(keys.evaluation_context)
    assert not loaded.is_private()
    assert not loaded.has_relin_keys()
    assert not loaded.has_galois_keys()
    assert len(keys.evaluation_context) < 1024  # parameters only

    chunks = encrypt_vector(keys.secret_context, np.ones(5))
    with pytest.raises(TesseraError) as info:
        decrypt_vector(keys.evaluation_context, chunks, length=5)
    assert info.value.code is ErrorCode.KEY_MISSING
    with pytest.raises(TesseraError) as info:
        encrypt_vector(keys.evaluation_context, np.ones(5))
    assert info.value.code is ErrorCode.KEY_MISSING
    # The sum the coordinator computes stays unreadable to the coordinator's context...
    total = add_encrypted(keys.evaluation_context, [chunks, chunks])
    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(loaded, total[0]).decrypt()
    # ...and is right for the sites.
    np.testing.assert_allclose(decrypt_vector(keys.secret_context, total, length=5), 2.0)


def test_secret_context_holds_no_relin_or_galois_keys(keys: CkksKeys) -> None:
    assert can_decrypt(keys.secret_context) is True
    assert can_encrypt(keys.secret_context) is True
    loaded = ts.context_from(keys.secret_context)
    assert loaded.is_private()
    assert not loaded.has_relin_keys()
    assert not loaded.has_galois_keys()


def test_capability_probes_see_a_public_key_that_could_encrypt() -> None:
    # A context the coordinator must never hold: no secret, but a public key.
    context = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    context.global_scale = 2.0**40
    public = context.serialize(save_public_key=True, save_secret_key=False)

    assert can_encrypt(public) is True
    assert can_decrypt(public) is False


def test_fingerprint_differs_per_key_and_is_recomputable(keys: CkksKeys) -> None:
    other = generate_keys(CkksParams())
    reserialized = ts.context_from(keys.secret_context).serialize(save_secret_key=True)

    assert other.fingerprint != keys.fingerprint
    assert fingerprint_of_secret(keys.secret_context) == keys.fingerprint
    assert fingerprint_of_secret(reserialized) == keys.fingerprint
    assert len(keys.fingerprint) == 64
    with pytest.raises(TesseraError) as info:
        fingerprint_of_secret(keys.evaluation_context)
    assert info.value.code is ErrorCode.KEY_MISSING


def test_repr_never_shows_key_bytes(keys: CkksKeys) -> None:
    text = repr(keys)

    assert keys.fingerprint in text
    assert "secret_context" not in text
    assert "\\x" not in text
    assert len(text) < 120


@pytest.fixture(scope="module")
def upload(keys: CkksKeys) -> list[bytes]:
    return encrypt_vector(keys.secret_context, np.linspace(-1, 1, 5_000))


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        ([b"not a ciphertext", b"x"], "not a CKKS ciphertext"),
        ([b"", b"x"], "non-empty bytes"),
        (["text", b"x"], "non-empty bytes"),
        ("truncated", "not a CKKS ciphertext"),
        ("one chunk", "has 1 chunks"),
        ("shorter", "holds 4000 values"),
        ("foreign parameters", "not a CKKS ciphertext"),
        ("other scale", "data level and scale"),
    ],
)
def test_bad_or_mismatched_ciphertexts_are_refused_with_a_reason(
    keys: CkksKeys, upload: list[bytes], second: object, reason: str
) -> None:
    if second == "truncated":
        second = [upload[0][:-100], upload[1]]
    elif second == "one chunk":
        second = upload[:1]
    elif second == "shorter":
        second = encrypt_vector(keys.secret_context, np.zeros(8_096))
    elif second == "foreign parameters":
        small = generate_keys(CkksParams(4096, (40, 40), global_scale_bits=20))
        second = encrypt_vector(small.secret_context, np.zeros(4_000))  # 2 chunks
    elif second == "other scale":
        coarse = generate_keys(CkksParams(global_scale_bits=30))
        second = encrypt_vector(coarse.secret_context, np.zeros(5_000))

    with pytest.raises(TesseraError) as info:
        add_encrypted(keys.evaluation_context, [upload, second])  # type: ignore[list-item]

    assert info.value.code is ErrorCode.BAD_CIPHERTEXT
    assert info.value.message.startswith("vectors[1]")
    assert reason in info.value.message


def test_decrypt_refuses_chunks_shorter_than_the_length(
    keys: CkksKeys, upload: list[bytes]
) -> None:
    with pytest.raises(TesseraError) as info:
        decrypt_vector(keys.secret_context, upload, length=5_001)
    assert info.value.code is ErrorCode.BAD_CIPHERTEXT
    with pytest.raises(TesseraError) as info:
        decrypt_vector(keys.secret_context, [upload[1], upload[0]], length=10)
    assert info.value.code is ErrorCode.BAD_CIPHERTEXT


def test_headroom_golden_values() -> None:
    # Data primes 60 + 40 bits, scale 2**40: limit 2**(100 - 2 - 1 - 40), safety 2**10.
    assert headroom_bound(CkksParams(), contributors=1) == 2.0**47
    assert headroom_bound(CkksParams(), contributors=100) == 2.0**47 / 100
    # 100 sites of 500 examples with updates clipped to 10 are far inside it.
    check_headroom(CkksParams(), max_abs=500 * CLIP, contributors=100)


def test_headroom_check_refuses_a_magnitude_that_really_wraps() -> None:
    params = CkksParams(coeff_mod_bit_sizes=(60, 60), global_scale_bits=40)  # one data prime
    narrow = generate_keys(params)
    contributors, big = 10, 1e5

    with pytest.raises(TesseraError) as info:
        check_headroom(params, max_abs=big, contributors=contributors)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert "max_abs" in info.value.message

    def encrypted_sum(value: float) -> float:
        upload = encrypt_vector(narrow.secret_context, np.array([value]))
        total = add_encrypted(narrow.evaluation_context, [upload] * contributors)
        return float(decrypt_vector(narrow.secret_context, total, length=1)[0])

    # The refused magnitude does wrap: the decrypted sum is garbage.
    assert abs(encrypted_sum(big) - contributors * big) > 1.0
    # The largest admitted magnitude sums correctly.
    bound = headroom_bound(params, contributors=contributors)
    check_headroom(params, max_abs=bound, contributors=contributors)
    assert encrypted_sum(bound) == pytest.approx(contributors * bound, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"poly_modulus_degree": 1024}, "poly_modulus_degree"),
        ({"poly_modulus_degree": 2048, "coeff_mod_bit_sizes": (30, 25)}, "coeff_mod_bit_sizes"),
        ({"coeff_mod_bit_sizes": (60, 60, 60, 40)}, "coeff_mod_bit_sizes"),  # 220 > 218
        ({"coeff_mod_bit_sizes": (60,)}, "coeff_mod_bit_sizes"),
        ({"coeff_mod_bit_sizes": (60, 61)}, "coeff_mod_bit_sizes"),
        ({"global_scale_bits": 60}, "global_scale_bits"),
        ({"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": (40, 40, 40)}, "coeff_mod_bit_sizes"),
    ],
)
def test_params_reject_insecure_or_unusable_settings(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(TesseraError) as info:
        CkksParams(**kwargs)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith(name)


def test_params_accept_lists_from_plans() -> None:
    params = CkksParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=[60, 40, 40, 60])  # type: ignore[arg-type]
    assert params.coeff_mod_bit_sizes == (60, 40, 40, 60)
    assert params.slots == 8192


def test_encrypt_refuses_values_that_cannot_be_encoded(keys: CkksKeys) -> None:
    for values in (np.array([1.0, np.nan]), np.ones((2, 2)), np.array([]), [1.0, 2.0]):
        with pytest.raises(TesseraError) as info:
            encrypt_vector(keys.secret_context, values)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.DATA_INVALID
    with pytest.raises(TesseraError) as info:
        encrypt_vector(b"garbage", np.ones(3))
    assert info.value.code is ErrorCode.CONFIG_INVALID


def test_sums_stream_from_a_generator_holding_one_contribution_at_a_time(
    keys: CkksKeys,
) -> None:
    import tracemalloc

    rng = np.random.default_rng(9)
    sites, length = 20, 3 * CkksParams().slots
    updates = rng.normal(size=(sites, length))
    uploads = [encrypt_vector(keys.secret_context, u) for u in updates]
    upload_bytes = sum(len(c) for c in uploads[0])

    def arriving(count: int) -> object:
        for upload in uploads[:count]:
            yield [bytes(bytearray(c)) for c in upload]  # a fresh copy, as read from the wire

    def traced_peak(count: int) -> tuple[list[bytes], int]:
        tracemalloc.start()
        try:
            total = add_encrypted(keys.evaluation_context, arriving(count))  # type: ignore[arg-type]
            return total, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    _, peak_of_five = traced_peak(5)
    total, peak = traced_peak(sites)
    # The running sum (both polynomials of every chunk) is held throughout, and a contribution
    # is unpacked and expanded into arrays of the same shape before it is added; all of it is
    # numpy memory, which tracemalloc sees (the library's own memory it does not).
    layout = layout_of(load_context(keys.evaluation_context, name="evaluation_context"))
    running = 2 * len(uploads[0]) * len(layout.moduli) * layout.degree * 8
    # Twenty contributions went through; at most a few were alive at once, and four times as
    # many contributions took no more memory.
    assert peak < 2 * running + 4 * upload_bytes < sites * upload_bytes
    assert peak < peak_of_five + upload_bytes / 4
    decrypted = decrypt_vector(keys.secret_context, total, length=length)
    np.testing.assert_allclose(decrypted, updates.sum(axis=0), atol=1e-6)
    with pytest.raises(TesseraError) as info:
        add_encrypted(keys.evaluation_context, iter([]))
    assert info.value.code is ErrorCode.BAD_CIPHERTEXT

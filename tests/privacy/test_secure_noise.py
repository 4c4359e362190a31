"""Behaviour of DP-SGD's secure randomness: the ChaCha20 keystream, Gaussian noise of the
right distribution with the floating-point mitigation, and Poisson sampling at the planned
rate, none of it touching torch's or numpy's generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from common.errors import ErrorCode, TesseraError
from privacy.secure_noise import (
    KEY_BYTES,
    ChaChaStream,
    SecureGaussian,
    SecurePoissonSampler,
    new_key,
)

KEY = bytes(range(32))


def test_keystream_matches_the_rfc_8439_test_vector() -> None:
    # RFC 8439, section 2.3.2: key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00, block 1.
    stream = ChaChaStream(KEY, nonce=bytes.fromhex("000000090000004a00000000"))
    stream.words(8)  # block 0 (64 bytes)

    block_1 = stream.words(8).astype("<u8").tobytes()

    assert block_1.hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )


def test_standard_normals_have_the_normal_distribution() -> None:
    draws = SecureGaussian(KEY).standard_normal(400_000)

    assert draws.dtype == np.float64 and draws.shape == (400_000,)
    assert abs(draws.mean()) < 5 / np.sqrt(len(draws))
    assert draws.var() == pytest.approx(1.0, abs=0.01)
    assert stats.kstest(draws, "norm").pvalue > 1e-3
    assert abs(stats.kurtosis(draws)) < 0.05  # Gaussian tails, not merely unit variance


@pytest.mark.parametrize("std", [0.5, 3.0])
def test_noise_is_gaussian_with_the_requested_std(std: float) -> None:
    noise = SecureGaussian(KEY).noise(200_001, std=std)  # odd: Box-Muller pairs split

    assert noise.shape == (200_001,)
    assert abs(noise.mean()) < 5 * std / np.sqrt(len(noise))
    assert noise.std() == pytest.approx(std, rel=0.01)
    assert stats.kstest(noise / std, "norm").pvalue > 1e-3


def test_each_noise_value_sums_four_normals_over_two() -> None:
    # The floating-point mitigation: value = (z1 + z2 + z3 + z4) / 2 * std, from one stream.
    count = 1000
    reference = SecureGaussian(KEY).standard_normal(4 * count).reshape(4, count)

    noise = SecureGaussian(KEY).noise(count, std=1.5)

    np.testing.assert_allclose(noise, reference.sum(axis=0) * 0.75, rtol=1e-12)


def test_different_keys_give_unrelated_noise_and_the_same_key_the_same() -> None:
    a = SecureGaussian(KEY).noise(10_000, std=1.0)
    b = SecureGaussian(bytes(range(1, 33))).noise(10_000, std=1.0)

    assert np.array_equal(a, SecureGaussian(KEY).noise(10_000, std=1.0))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05


def test_fresh_keys_are_256_secret_bits_and_never_repeat() -> None:
    keys = {new_key() for _ in range(100)}

    assert len(keys) == 100
    assert all(len(key) == KEY_BYTES == 32 for key in keys)


def test_drawing_noise_and_batches_leaves_torch_and_numpy_generators_alone() -> None:
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()

    SecureGaussian(new_key()).noise(10_000, std=1.0)
    SecurePoissonSampler(new_key(), n=1000, sample_rate=0.1).batch()

    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np.array_equal(after[1], numpy_state[1]) and after[2] == numpy_state[2]


def test_poisson_batches_sample_each_example_at_the_planned_rate() -> None:
    sampler = SecurePoissonSampler(KEY, n=500, sample_rate=0.07)

    counts = np.zeros(500)
    sizes = []
    for _ in range(400):
        batch = sampler.batch()
        assert np.all(np.diff(batch) > 0) and batch.dtype == np.int64
        counts[batch] += 1
        sizes.append(len(batch))

    # 200,000 Bernoulli(0.07) trials in all; each example ~ Binomial(400, 0.07).
    assert counts.sum() / (500 * 400) == pytest.approx(0.07, abs=0.003)
    assert np.var(sizes) == pytest.approx(500 * 0.07 * 0.93, rel=0.2)  # Poisson, not fixed
    assert stats.chisquare(counts).pvalue > 1e-4  # no example favoured


def test_full_rate_sampling_takes_every_example_and_keys_change_the_batches() -> None:
    assert np.array_equal(
        SecurePoissonSampler(KEY, n=7, sample_rate=1.0).batch(), np.arange(7)
    )
    a = [SecurePoissonSampler(KEY, n=300, sample_rate=0.5).batch() for _ in range(2)]
    b = SecurePoissonSampler(bytes(range(1, 33)), n=300, sample_rate=0.5).batch()
    assert np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], b)


def test_noise_and_sampling_streams_of_one_key_are_separate() -> None:
    noise_words = ChaChaStream(KEY, nonce=b"dpsgd-noise\x00").words(4)
    sampling_words = ChaChaStream(KEY, nonce=b"dpsgd-sample").words(4)

    assert not np.array_equal(noise_words, sampling_words)


@pytest.mark.parametrize("key", [b"", b"fifteen bytes!!", "a" * 32, None])
def test_short_or_non_byte_keys_are_refused(key: object) -> None:
    with pytest.raises(TesseraError) as info:
        SecureGaussian(key)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith("noise_key")


def test_a_128_bit_key_is_accepted_and_stretched() -> None:
    short = SecureGaussian(bytes(16)).noise(100, std=1.0)

    assert short.std() > 0
    assert not np.array_equal(short, SecureGaussian(bytes(32)).noise(100, std=1.0))

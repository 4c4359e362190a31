"""Behaviour of DP-SGD's secure randomness: the ChaCha20 keystream, Gaussian noise of the
right distribution with the floating-point mitigation, and Poisson sampling at the planned
rate, none of it touching torch's or numpy's generators."""

from __future__ import annotations

from fractions import Fraction

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
    _exact_gap,
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


@pytest.mark.parametrize("words_per_read", [None, 1])
def test_poisson_batches_of_three_rows_have_the_product_distribution(
    words_per_read: int | None,
) -> None:
    # Independence, not only the marginal rate: all 8 subsets at their Bernoulli odds, also
    # when a batch's gaps come from several reads of the stream (one word at a time).
    rate, batches = 0.3, 20_000
    sampler = SecurePoissonSampler(KEY, n=3, sample_rate=rate)
    if words_per_read is not None:
        sampler._words_per_read = words_per_read

    observed = np.zeros(8)
    for _ in range(batches):
        observed[sum(1 << int(i) for i in sampler.batch())] += 1

    expected = np.array([rate ** bin(s).count("1") * (1 - rate) ** (3 - bin(s).count("1"))
                         for s in range(8)]) * batches
    assert stats.chisquare(observed, expected).pvalue > 1e-4


@pytest.mark.parametrize("n, rate", [(2000, 0.05), (50_000, 256 / 50_000)])
def test_batch_sizes_are_binomial_and_every_row_is_equally_likely(n: int, rate: float) -> None:
    sampler = SecurePoissonSampler(KEY, n=n, sample_rate=rate)
    steps = 3000

    counts = np.zeros(n)
    sizes = np.empty(steps)
    for step in range(steps):
        batch = sampler.batch()
        assert np.all(np.diff(batch) > 0) and batch.dtype == np.int64
        assert len(batch) == 0 or (batch[0] >= 0 and batch[-1] < n)
        counts[batch] += 1
        sizes[step] = len(batch)

    mean, variance = n * rate, n * rate * (1 - rate)
    assert abs(sizes.mean() - mean) < 5 * np.sqrt(variance / steps)
    assert sizes.var(ddof=1) == pytest.approx(variance, rel=0.15)
    assert counts.sum() / (n * steps) == pytest.approx(rate, rel=0.01)
    assert stats.chisquare(counts).pvalue > 1e-4  # no row favoured, first and last included


@pytest.mark.parametrize("rate", [0.5, 0.3, 256 / 50_000, 1e-6, 0.999_999])
def test_float_gaps_equal_the_exact_integer_decision(rate: float) -> None:
    n = 1_000_000
    words = ChaChaStream(KEY, nonce=b"test-words\x00\x00").words(3000)

    gaps = SecurePoissonSampler(KEY, n=n, sample_rate=rate).gaps(words)

    refine = ChaChaStream(KEY, nonce=b"test-refine\x00")
    exact = [_exact_gap(int(w), rate, n=n, stream=refine) for w in words]
    assert gaps.tolist() == exact


@pytest.mark.parametrize("rate, k", [(0.3, 1), (0.3, 7), (256 / 50_000, 200), (1e-6, 50_003)])
def test_a_gap_whose_first_word_straddles_the_boundary_reads_more_bits(
    rate: float, k: int
) -> None:
    # G >= k exactly when U <= (1 - q)**k. Words just below and above floor((1 - q)**k 2**64)
    # are decided by their 64 bits; the word that contains the boundary needs the next one.
    numerator, denominator = rate.as_integer_ratio()
    boundary = Fraction(denominator - numerator, denominator) ** k
    word = int(boundary * 2**64)
    sampler = SecurePoissonSampler(KEY, n=10**6, sample_rate=rate)

    below, above = sampler.gaps(np.array([word - 1, word + 1], dtype=np.uint64))
    assert below >= k > above
    straddling = int(sampler.gaps(np.array([word], dtype=np.uint64))[0])

    # The sampler's stream was fresh: the refining word is its first one.
    extra = int(ChaChaStream(KEY, nonce=b"dpsgd-sample").words(1)[0])
    low = Fraction((word << 64) | extra, 2**128)
    high = low + Fraction(1, 2**128)
    assert high <= boundary or low >= boundary  # 128 bits decide it for this key
    assert straddling == (k if high <= boundary else k - 1)


def test_a_zero_word_is_resolved_exactly_not_by_its_logarithm() -> None:
    # U in (0, 2**-64]: any gap of at least 64 ln 2 / -ln(1 - q) is possible.
    rate, n = 0.5, 10_000
    gaps = SecurePoissonSampler(KEY, n=n, sample_rate=rate).gaps(np.zeros(1, dtype=np.uint64))

    assert 64 <= gaps[0] <= n


@pytest.mark.parametrize("rate", [1e-300, 5e-324, 1 - 2**-53])
def test_extreme_rates_sample_without_overflow(rate: float) -> None:
    sampler = SecurePoissonSampler(KEY, n=50, sample_rate=rate)

    sizes = [len(sampler.batch()) for _ in range(20)]

    assert sizes == ([50] * 20 if rate > 0.5 else [0] * 20)


def test_a_batch_reads_about_q_n_keystream_words_not_n(monkeypatch: pytest.MonkeyPatch) -> None:
    n, rate = 1_000_000, 0.000_256
    sampler = SecurePoissonSampler(KEY, n=n, sample_rate=rate)
    read = []
    words = sampler._stream.words
    monkeypatch.setattr(sampler._stream, "words", lambda count: read.append(count) or words(count))

    for _ in range(50):
        sampler.batch()

    assert sum(read) / 50 < 2 * n * rate


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

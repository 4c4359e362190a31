"""Differentially private federation statistics: bounded rows, calibrated noise, a usable
standardisation, and training noise calibrated around the release."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import TesseraError
from privacy.accounting import epsilon_for_history, noise_for_target
from privacy.dp_statistics import (
    FeatureRanges,
    noisy_statistics,
    row_vectors,
    standardisation,
)
from privacy.mechanisms import DpStep, GaussianRelease

RANGES = FeatureRanges.of([0.0, -5.0, 100.0], [10.0, 5.0, 300.0])


def test_every_row_contributes_at_most_the_clip() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal([5, 0, 200], [20, 20, 500], size=(500, 3))  # far outside the ranges too
    rows = row_vectors(X, RANGES, clip=1.5)
    assert rows.shape == (500, 3)
    assert np.linalg.norm(rows, axis=1).max() <= 1.5 + 1e-12
    assert np.abs(rows).max() <= 1.0  # normalised and clipped per feature


def test_release_noise_has_the_mechanisms_scale() -> None:
    X = np.tile([5.0, 0.0, 200.0], (10, 1))  # every row at the centre: the exact sum is 0
    draws = np.array([noisy_statistics(X, RANGES, clip=2.0, noise_multiplier=3.0)
                      for _ in range(400)])
    # 1,200 draws of N(0, 6^2): the mean's standard error is 0.17 and the standard
    # deviation's 0.12; five of each keeps a correct mechanism from failing by chance.
    assert abs(draws.std() - 6.0) < 0.6 and abs(draws.mean()) < 0.9


def test_summed_releases_recover_the_means_and_the_declared_scale() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal([4.0, 1.0, 180.0], [1.0, 1.5, 20.0], size=(20000, 3))
    sums = noisy_statistics(X, RANGES, clip=2.0, noise_multiplier=4.0)
    mean, scale = standardisation(sums, len(X), RANGES)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=0.02)
    np.testing.assert_allclose(scale, [1.25, 1.25, 25.0])  # a quarter of each half-width


def test_noise_never_moves_a_mean_outside_its_range() -> None:
    mean, scale = standardisation(np.array([500.0, -500.0, 0.0]), 100.0, RANGES)
    np.testing.assert_allclose(mean, [10.0, -5.0, 200.0])
    assert np.all(scale > 0)


def test_bad_ranges_and_parameters_are_refused() -> None:
    with pytest.raises(TesseraError):
        FeatureRanges.of([1.0], [1.0])
    with pytest.raises(TesseraError):
        noisy_statistics(np.zeros((2, 3)), RANGES, clip=1.0, noise_multiplier=0.0)


def test_training_noise_leaves_room_for_the_statistics_release() -> None:
    stats = GaussianRelease(noise_multiplier=4.0, count=1)
    alone = noise_for_target(target_epsilon=3.0, delta=1e-5, sample_rate=0.2, steps=30)
    shared = noise_for_target(target_epsilon=3.0, delta=1e-5, sample_rate=0.2, steps=30,
                              extra=(stats,))
    assert shared > alone
    total = epsilon_for_history([DpStep(shared, 0.2, 30), stats], delta=1e-5)
    assert 3.0 - 0.002 <= total <= 3.0
    with pytest.raises(TesseraError):
        noise_for_target(target_epsilon=0.5, delta=1e-5, sample_rate=0.2, steps=30,
                         extra=(GaussianRelease(noise_multiplier=0.5, count=1),))

"""Differentially private evaluation releases: noisy histogram cells, suppression below the
noise, and the clipped importance release with its count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.errors import TesseraError
from privacy.dp_evaluation import (
    SUPPRESS_SIGMAS,
    clip_rows,
    importance_sensitivity,
    noisy_cells,
    noisy_importance,
    suppress,
    suppression_floor,
)


def test_noisy_cells_are_whole_numbers_with_the_declared_spread() -> None:
    cells = np.zeros(20_000, dtype=np.int64)
    noisy = noisy_cells(cells, noise_multiplier=3.0)
    assert noisy.dtype == np.int64
    # Rounding adds variance 1/12 to the Gaussian's 9.
    assert np.std(noisy) == pytest.approx(math.sqrt(9 + 1 / 12), rel=0.03)
    assert abs(np.mean(noisy)) < 0.1
    assert (noisy < 0).any()  # negative before suppression


def test_noisy_cells_are_fresh_each_time_and_keep_the_shape() -> None:
    cells = np.arange(12).reshape(3, 4)
    first = noisy_cells(cells, noise_multiplier=2.0)
    second = noisy_cells(cells, noise_multiplier=2.0)
    assert first.shape == (3, 4)
    assert not np.array_equal(first, second)


def test_the_same_key_gives_the_same_noise() -> None:
    cells = np.zeros(50)
    key = bytes(range(32))
    assert np.array_equal(noisy_cells(cells, noise_multiplier=1.0, key=key),
                          noisy_cells(cells, noise_multiplier=1.0, key=key))


def test_suppression_floor_grows_with_the_summed_noise() -> None:
    assert suppression_floor(noise_multiplier=3.0, contributors=1) == SUPPRESS_SIGMAS * 3.0
    assert suppression_floor(noise_multiplier=3.0, contributors=4) == SUPPRESS_SIGMAS * 6.0
    with pytest.raises(TesseraError, match="contributors"):
        suppression_floor(noise_multiplier=3.0, contributors=0)


def test_suppress_zeroes_cells_below_the_floor_and_negatives() -> None:
    cells = np.array([-3, 0, 5, 6, 7, 40])
    assert suppress(cells, floor=6.0).tolist() == [0, 0, 0, 6, 7, 40]
    assert suppress(cells, floor=0.0).tolist() == [0, 0, 5, 6, 7, 40]


def test_clip_rows_bounds_each_row_and_keeps_short_ones() -> None:
    rows = np.array([[3.0, 4.0], [0.3, 0.4]])
    clipped = clip_rows(rows, clip=1.0)
    assert np.linalg.norm(clipped, axis=1) == pytest.approx([1.0, 0.5])
    assert clipped[0] == pytest.approx([0.6, 0.8])


def test_importance_release_has_the_declared_noise_and_an_unbiased_count() -> None:
    rises = np.full((100, 3), 0.1)
    draws = [noisy_importance(rises, clip=1.0, noise_multiplier=2.0) for _ in range(400)]
    sums = np.array([d.sums for d in draws])
    counts = np.array([d.count for d in draws])
    std = 2.0 * importance_sensitivity(1.0)
    assert np.std(sums[:, 0]) == pytest.approx(std, rel=0.15)
    # 400 draws of std 5.66: each mean has standard error 0.28; allow five.
    assert np.mean(sums, axis=0) == pytest.approx([10.0] * 3, abs=1.5)
    assert np.mean(counts) == pytest.approx(100, abs=1.5)
    assert np.std(counts) == pytest.approx(std, rel=0.15)  # count coordinate scaled by clip


def test_importance_rejects_bad_input() -> None:
    with pytest.raises(TesseraError, match="clip"):
        noisy_importance(np.zeros((3, 2)), clip=0.0, noise_multiplier=1.0)
    with pytest.raises(TesseraError, match="noise_multiplier"):
        noisy_importance(np.zeros((3, 2)), clip=1.0, noise_multiplier=-1.0)
    with pytest.raises(TesseraError, match="finite"):
        noisy_importance(np.array([[np.nan, 1.0]]), clip=1.0, noise_multiplier=1.0)

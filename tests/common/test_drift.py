"""Distribution-shift statistics: PSI and KS against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from common.drift import (
    counts,
    ks_p_value,
    ks_statistic,
    psi,
    quantile_edges,
    score_counts,
)
from common.errors import TesseraError


def test_psi_matches_the_formula_and_is_zero_for_equal_shares() -> None:
    expected, actual = [50, 30, 20], [30, 30, 40]
    by_hand = sum((a - e) * math.log(a / e) for e, a in ((0.5, 0.3), (0.3, 0.3), (0.2, 0.4)))
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi([1, 2, 3], [2, 4, 6]) == 0.0
    assert math.isfinite(psi([10, 0], [0, 10]))


def test_psi_refuses_mismatched_or_empty_counts() -> None:
    for e, a in (([1, 2], [1, 2, 3]), ([0, 0], [1, 1]), ([-1, 2], [1, 1])):
        with pytest.raises(TesseraError):
            psi(e, a)


def test_decile_bins_hold_a_tenth_of_the_reference_each() -> None:
    reference = np.arange(1000, dtype=float)
    edges = quantile_edges(reference)
    assert len(edges) == 9
    np.testing.assert_array_equal(counts(reference, edges), [100] * 10)
    assert score_counts([0.0, 0.05, 0.95, 1.0]).tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2]


def test_ks_statistic_and_p_value_agree_with_scipy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 400), rng.normal(0.3, 1, 300)
    reference = stats.ks_2samp(a, b, method="asymp")
    d = ks_statistic(a, b)
    assert d == pytest.approx(reference.statistic)
    assert ks_p_value(d, a.size, b.size) == pytest.approx(reference.pvalue, rel=1e-9)
    assert ks_statistic(a, a) == 0.0

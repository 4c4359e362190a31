"""Evaluation counts rebuilt from the groups' histograms, the form DP releases take."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import TesseraError
from common.eval_counts import HeldOutCounts, count_held_out
from common.eval_partition import (
    evaluation_bins,
    from_partition,
    map_partition,
    midpoint_sums,
    partition,
    rederive,
)
from common.plan import StudyPlan, bundled_plan_path, load_plan


def test_partition_leaves_out_the_all_rows_group() -> None:
    assert partition(("", "0", "1", "(other)")) == ("0", "1", "(other)")
    assert partition(("",)) == ("",)


def test_all_rows_histogram_is_the_sum_of_the_groups() -> None:
    rng = np.random.default_rng(1)
    scores, labels = rng.uniform(size=200), rng.integers(0, 2, 200)
    groups_of_rows = rng.choice(["0", "1", "x"], size=200)
    groups = ("", "0", "1", "(other)")
    exact = count_held_out(scores, labels, groups_of_rows, groups=groups, bins=10)
    rebuilt = from_partition({g: exact.histograms[g] for g in groups[1:]}, groups, bins=10)
    for side in (0, 1):
        assert np.array_equal(rebuilt.histograms[""][side], exact.histograms[""][side])
    assert rebuilt.n == exact.n == 200


def test_midpoint_sums_score_each_row_at_its_bin_centre() -> None:
    log_loss, brier = midpoint_sums(np.array([0, 2]), np.array([1, 0]))
    # One negative at 0.25, two positives at 0.75.
    assert log_loss == pytest.approx(-np.log(0.75) - 2 * np.log(0.75))
    assert brier == pytest.approx(0.25**2 + 2 * 0.25**2)


def test_map_partition_and_rederive_keep_counts_consistent() -> None:
    hist = (np.array([1, -2, 5]), np.array([4, 0, -1]))
    counts = HeldOutCounts(bins=3, histograms={"": hist}, log_loss_sum=0.0, brier_sum=0.0, n=7)
    cleaned = map_partition(counts, ("",), lambda cells: np.maximum(cells, 0))
    assert cleaned.histograms[""][0].tolist() == [1, 0, 5]
    assert cleaned.n == 10
    again = rederive(cleaned)
    assert (again.log_loss_sum, again.brier_sum, again.n) == (
        cleaned.log_loss_sum, cleaned.brier_sum, cleaned.n)


def test_partition_must_match_the_plan_groups() -> None:
    with pytest.raises(TesseraError, match="groups"):
        from_partition({"0": (np.zeros(2), np.zeros(2))}, ("", "0", "1"), bins=2)


def test_bins_default_to_coarse_with_dp_and_fine_without() -> None:
    plan = load_plan(bundled_plan_path("breast_cancer"))
    assert plan.evaluation_policy.bins is None
    assert evaluation_bins(plan) == 10
    raw = plan.model_dump()
    raw["privacy"]["dp"] = False
    assert evaluation_bins(StudyPlan.model_validate(raw)) == 1000
    raw["evaluation"]["bins"] = 40
    assert evaluation_bins(StudyPlan.model_validate(raw)) == 40

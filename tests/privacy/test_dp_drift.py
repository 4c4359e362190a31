"""The drift release: public bins, one cell per row and feature, Gaussian noise, and what the
ledger records (privacy/dp_drift.py, privacy/release_plan.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tomli_w

from common.errors import ErrorCode, TesseraError
from common.plan import parse_plan, plan_hash, plan_to_toml
from privacy.accounting import epsilon_for_history
from privacy.dp_drift import (
    DriftBins,
    cleaned_shares,
    drift_mechanism,
    histograms,
    noisy_histograms,
    watched_features,
)
from privacy.mechanisms import GaussianRelease
from privacy.release_plan import budget_split, planned_releases
from tests.drift_federation import WATCHED, drift_plan


def test_each_row_lands_in_exactly_one_bin_of_every_feature() -> None:
    bins = DriftBins.of([0.0, -1.0], [10.0, 1.0], bins=5)
    X = np.array([[0.0, -1.0], [9.99, 0.0], [10.0, 1.0], [-50.0, 7.0], [4.0, 0.5]])
    cells = histograms(X, bins)
    assert cells.tolist() == [[2, 0, 1, 0, 2], [1, 0, 1, 1, 2]]
    assert np.all(cells.sum(axis=1) == len(X))  # out-of-range values sit in the end bins


def test_adding_one_row_changes_one_cell_per_feature_by_one() -> None:
    rng = np.random.default_rng(1)
    bins = DriftBins.of([0.0] * 4, [1.0] * 4, bins=10)
    X = rng.uniform(0, 1, (50, 4))
    diff = histograms(np.vstack([X, rng.uniform(0, 1, (1, 4))]), bins) - histograms(X, bins)
    assert np.all(np.abs(diff).sum(axis=1) == 1)
    assert math.isclose(float(np.linalg.norm(diff)), 2.0)  # sqrt(F) over the F histograms


def test_noisy_cells_are_rounded_and_spread_like_the_noise() -> None:
    bins = DriftBins.of([0.0], [1.0], bins=10)
    X = np.full((1000, 1), 0.55)
    exact = histograms(X, bins)
    draws = np.stack([noisy_histograms(X, bins, noise_multiplier=3.0) - exact
                      for _ in range(40)]).ravel()
    assert draws.dtype == np.int64
    assert abs(draws.std() - 3.0) < 5 * 3.0 / math.sqrt(2 * draws.size)
    assert abs(draws.mean()) < 5 * 3.0 / math.sqrt(draws.size)


def test_the_ledger_mechanism_is_one_unit_gaussian_per_feature() -> None:
    mechanism = drift_mechanism(noise_multiplier=4.0, features=9)
    assert mechanism == GaussianRelease(noise_multiplier=4.0, count=9)
    as_one = GaussianRelease(noise_multiplier=4.0 / 3.0, count=1)  # sensitivity sqrt(9)
    assert epsilon_for_history([mechanism], delta=1e-5) == pytest.approx(
        epsilon_for_history([as_one], delta=1e-5), rel=1e-3)


def test_shares_ignore_negative_noise_and_refuse_an_empty_histogram() -> None:
    assert cleaned_shares(np.array([-3, 1, 3])).tolist() == [0.0, 0.25, 0.75]
    with pytest.raises(TesseraError) as err:
        cleaned_shares(np.array([-1, 0]))
    assert err.value.code == ErrorCode.DATA_INVALID


def test_watched_features_follow_the_plan() -> None:
    plan = drift_plan()
    watched = watched_features(plan)
    assert watched.names == tuple(WATCHED) and watched.bins.bins == 10
    assert [plan.dataset.features[i] for i in watched.columns] == WATCHED
    columns = plan.dataset.columns or {}
    assert watched.bins.lows[0] == columns[WATCHED[0]].min


def test_the_plan_budgets_one_drift_release_and_the_split_names_it() -> None:
    plan = drift_plan()
    assert planned_releases(plan)[-1] == GaussianRelease(noise_multiplier=2.0,
                                                         count=len(WATCHED))
    split = budget_split(plan)
    assert split is not None and split.drift is not None and split.drift > 0
    assert any(line.startswith("drift histograms") for line in split.lines())
    assert split.to_json()["drift_epsilon"] == split.drift
    without = budget_split(drift_plan(drift=False))
    assert without is not None and without.drift is None
    assert without.releases < split.releases


def test_a_drift_section_needs_known_features_with_ranges() -> None:
    raw = drift_plan().model_dump(mode="json", exclude_none=True)
    raw["drift"]["features"] = ["mean_radius", "no_such_feature"]
    with pytest.raises(TesseraError) as err:
        parse_plan(tomli_w.dumps(raw))
    assert err.value.code == ErrorCode.PLAN_INVALID and "no_such_feature" in err.value.message
    raw["drift"]["features"] = ["mean_radius"]
    del raw["dataset"]["columns"]["mean_radius"]["max"]
    with pytest.raises(TesseraError) as err:
        parse_plan(tomli_w.dumps(raw))
    assert "mean_radius needs a min and a max" in err.value.message
    assert parse_plan(plan_to_toml(drift_plan())) == drift_plan()


def test_scores_are_one_more_histogram_over_zero_to_one() -> None:
    plain, scored = drift_plan(), drift_plan(scores=True)
    assert not watched_features(plain).scores and watched_features(scored).scores
    bins = watched_features(scored).release_bins(with_scores=True)
    assert bins.features == len(WATCHED) + 1
    assert (bins.lows[-1], bins.highs[-1]) == (0.0, 1.0)
    assert watched_features(scored).release_bins(with_scores=False).features == len(WATCHED)
    assert planned_releases(scored)[-1] == GaussianRelease(noise_multiplier=2.0,
                                                           count=len(WATCHED) + 1)
    split, fewer = budget_split(scored), budget_split(plain)
    assert split is not None and fewer is not None and split.drift is not None
    assert fewer.drift is not None and split.drift > fewer.drift


def test_a_plan_without_scores_keeps_its_text_and_hash() -> None:
    plain = drift_plan()
    assert "scores" not in plan_to_toml(plain)
    assert "scores" not in plain.model_dump()["drift"]
    scored = drift_plan(scores=True)
    assert "score_psi_threshold = 0.25" in plan_to_toml(scored)
    assert parse_plan(plan_to_toml(scored)) == scored
    assert plan_hash(scored) != plan_hash(plain)
    raw = plain.model_dump(mode="json", exclude_none=True)
    raw["drift"]["scores"] = False  # written out explicitly: the same plan, the same hash
    assert plan_hash(parse_plan(tomli_w.dumps(raw))) == plan_hash(plain)

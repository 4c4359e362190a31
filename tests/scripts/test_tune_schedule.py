"""scripts/tune_schedule.py replays a plan's schedule on synthetic cohorts as the sites run it,
and compares candidates task by task."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from tune_schedule import CANDIDATES, evaluate, paired, with_changes

from common.plan import bundled_plan_path, load_plan


def test_a_dp_replay_of_the_bundled_plan_learns_an_easy_task() -> None:
    plan = with_changes(load_plan(bundled_plan_path("breast_cancer")), {"training.rounds": 1})
    result = evaluate(plan, task_seed=0, separation=0.98, key=0)
    assert result["baseline_auc"] > 0.85
    # One DP round at epsilon 3 already separates the classes nearly as well.
    assert result["auc"] > result["baseline_auc"] - 0.1
    assert result["gap"] == pytest.approx(result["baseline_auc"] - result["auc"])


def test_keyed_replays_repeat_exactly() -> None:
    plan = with_changes(load_plan(bundled_plan_path("diabetes")), {"training.rounds": 1})
    first = evaluate(plan, task_seed=1, separation=0.78, key=1)
    again = evaluate(plan, task_seed=1, separation=0.78, key=1)
    assert first["auc"] == again["auc"]


def test_paired_improvement_is_the_mean_difference_with_its_standard_error() -> None:
    assert paired([], [0.1]) == {}
    result = paired([0.10, 0.20, 0.30], [0.05, 0.10, 0.25])
    assert result["improvement"] == pytest.approx(0.2 / 3)
    # differences 0.05, 0.10, 0.05: sample standard deviation 0.0288675, over sqrt(3)
    assert result["improvement_se"] == pytest.approx(0.0288675 / 3**0.5, rel=1e-5)


def test_every_candidate_is_a_valid_plan_and_a_bad_field_is_refused() -> None:
    plan = load_plan(bundled_plan_path("diabetes"))
    for changes in CANDIDATES.values():
        with_changes(plan, changes)
    with pytest.raises(ValueError, match="learning_rate"):
        with_changes(plan, {"training.learning_rate": -1.0})


def test_the_exact_statistics_diagnosis_centres_on_the_pooled_mean() -> None:
    plan = with_changes(load_plan(bundled_plan_path("breast_cancer")), {"training.rounds": 1})
    noisy = evaluate(plan, task_seed=0, separation=0.98, key=0)
    exact = evaluate(plan, task_seed=0, separation=0.98, key=0,
                     options={"exact_statistics": True, "exact_counts": True})
    assert exact["mean_error"] < 1e-9 < noisy["mean_error"]
    assert 0.0 <= noisy["updates_truncated"] <= 1.0


def test_diagnosis_switches_leave_the_plan_alone() -> None:
    plan = load_plan(bundled_plan_path("breast_cancer"))
    assert with_changes(plan, CANDIDATES["exact_statistics_counts"]) == plan

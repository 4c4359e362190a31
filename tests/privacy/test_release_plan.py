"""The releases a run makes besides DP-SGD, and the budget split a site approves."""

from __future__ import annotations

from common.plan import StudyPlan, bundled_plan_path, load_plan
from privacy.accounting import epsilon_for_history
from privacy.mechanisms import GaussianRelease
from privacy.release_plan import budget_split, evaluated_rounds, planned_releases


def _plan(**evaluation: object) -> StudyPlan:
    raw = load_plan(bundled_plan_path("breast_cancer")).model_dump()
    raw["evaluation"].update(evaluation)
    return StudyPlan.model_validate(raw)


def test_a_run_plans_statistics_final_evaluation_and_importance() -> None:
    plan = _plan(every_round=False, importance=True, noise_multiplier=3.0,
                 importance_noise_multiplier=5.0)
    assert planned_releases(plan) == (
        GaussianRelease(plan.statistics_policy.count_noise_multiplier, 1),
        GaussianRelease(plan.statistics_policy.noise_multiplier, 1),
        GaussianRelease(3.0, 1), GaussianRelease(5.0, 1))


def test_every_round_evaluation_pays_once_per_round() -> None:
    plan = _plan(every_round=True, importance=False)
    assert evaluated_rounds(plan) == plan.training.rounds
    assert planned_releases(plan)[2] == GaussianRelease(
        plan.evaluation_policy.noise_multiplier, plan.training.rounds)
    assert len(planned_releases(plan)) == 3


def test_no_dp_plans_no_releases() -> None:
    raw = _plan().model_dump()
    raw["privacy"]["dp"] = False
    plan = StudyPlan.model_validate(raw)
    assert planned_releases(plan) == ()
    assert budget_split(plan) is None


def test_budget_split_states_each_part_at_the_plan_delta() -> None:
    plan = _plan(every_round=False, importance=True)
    split = budget_split(plan)
    assert split is not None
    delta = plan.privacy.delta
    assert split.evaluation == epsilon_for_history(
        [GaussianRelease(plan.evaluation_policy.noise_multiplier)], delta=delta)
    assert split.releases == epsilon_for_history(list(planned_releases(plan)), delta=delta)
    assert split.releases < plan.privacy.target_epsilon
    assert any("DP-SGD" in line for line in split.lines())
    assert split.to_json()["importance_epsilon"] == split.importance

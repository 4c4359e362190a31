"""KPI release gates: the plan's optional [kpis] table and evaluating final metrics against it."""

from __future__ import annotations

import math

import pytest

from common.errors import ErrorCode, TesseraError
from common.plan import KpiSpec, bundled_plan_path, load_plan, parse_plan, plan_hash, plan_to_toml
from server.kpi import evaluate_gates

# plan_hash of common/studies/breast_cancer.toml without its [kpis] table (with the rule's
# N = 4096, [60, 27, 20] CKKS parameters, 3 local epochs at learning rate 0.75): plans that
# set no gate must keep the hash their sites approved.
BREAST_CANCER_HASH_WITHOUT_KPIS = "ef5541ab68be6806204f4bd8e10a3df2c35de8328f2e8566923390a21d6b22e2"


def _bundled_text_without_kpis(name: str) -> str:
    text = bundled_plan_path(name).read_text(encoding="utf-8")
    return text.split("[kpis]")[0]


def test_a_plan_without_kpis_keeps_its_golden_hash() -> None:
    plan = parse_plan(_bundled_text_without_kpis("breast_cancer"))
    assert plan.kpis is None
    assert plan_hash(plan) == BREAST_CANCER_HASH_WITHOUT_KPIS


def test_an_empty_kpis_table_hashes_like_no_table() -> None:
    text = _bundled_text_without_kpis("breast_cancer")
    assert plan_hash(parse_plan(text + "\n[kpis]\n")) == BREAST_CANCER_HASH_WITHOUT_KPIS


def test_setting_a_gate_changes_the_hash_and_round_trips_through_toml() -> None:
    text = _bundled_text_without_kpis("breast_cancer")
    gated = parse_plan(text + "\n[kpis]\nmin_auc = 0.9\n")
    assert gated.kpis == KpiSpec(min_auc=0.9)
    assert plan_hash(gated) != BREAST_CANCER_HASH_WITHOUT_KPIS
    assert parse_plan(plan_to_toml(gated)) == gated
    stricter = parse_plan(text + "\n[kpis]\nmin_auc = 0.95\n")
    assert plan_hash(stricter) != plan_hash(gated)


def test_bundled_studies_set_their_gates() -> None:
    breast = load_plan(bundled_plan_path("breast_cancer")).kpis
    diabetes = load_plan(bundled_plan_path("diabetes")).kpis
    assert breast is not None and breast.gates() == {"min_auc": 0.9, "max_ece": 0.2}
    assert diabetes is not None and diabetes.gates() == {
        "min_auc": 0.65, "max_equalized_odds_difference": 0.5}


@pytest.mark.parametrize(("line", "where"), [
    ("min_auc = 1.5", "kpis.min_auc"),
    ("max_ece = -0.1", "kpis.max_ece"),
    ('min_accuracy = "0.9"', "kpis.min_accuracy"),
    ("min_f1 = 0.5", "kpis.min_f1"),
])
def test_invalid_kpis_are_rejected_naming_the_field(line: str, where: str) -> None:
    text = _bundled_text_without_kpis("breast_cancer") + f"\n[kpis]\n{line}\n"
    with pytest.raises(TesseraError) as caught:
        parse_plan(text)
    assert caught.value.code is ErrorCode.PLAN_INVALID
    assert where in caught.value.message


GOOD = {"auc": 0.97, "accuracy": 0.91, "ece": 0.05, "brier": 0.06,
        "fairness": {"equalized_odds_difference": 0.2, "demographic_parity_difference": 0.1}}
ALL_GATES = KpiSpec(min_auc=0.95, min_accuracy=0.9, max_ece=0.1, max_brier=0.1,
                    max_equalized_odds_difference=0.3, max_demographic_parity_difference=0.2)


def test_metrics_meeting_every_gate_are_promotable() -> None:
    outcome = evaluate_gates(ALL_GATES, GOOD)
    assert outcome.promotable and outcome.reasons == ()
    assert set(outcome.checks) == set(ALL_GATES.gates())
    assert all(check.passed for check in outcome.checks.values())
    assert outcome.checks["max_equalized_odds_difference"].value == 0.2


def test_no_kpis_means_promotable_without_checks() -> None:
    assert evaluate_gates(None, {}).promotable
    assert evaluate_gates(KpiSpec(), {}).checks == {}


def test_a_metric_past_its_bound_fails_with_a_reason_naming_gate_and_values() -> None:
    metrics = {**GOOD, "auc": 0.91, "ece": 0.12}
    outcome = evaluate_gates(ALL_GATES, metrics)
    assert not outcome.promotable
    assert outcome.reasons == (
        "min_auc: auc 0.9100 is below the minimum 0.95",
        "max_ece: ece 0.1200 is above the maximum 0.1",
    )
    assert not outcome.checks["min_auc"].passed and outcome.checks["min_accuracy"].passed


def test_a_value_on_the_bound_passes() -> None:
    outcome = evaluate_gates(KpiSpec(min_auc=0.9, max_ece=0.1), {"auc": 0.9, "ece": 0.1})
    assert outcome.promotable


@pytest.mark.parametrize("fairness", [None, {}, {"equalized_odds_difference": None},
                                      {"equalized_odds_difference": math.nan}])
def test_a_missing_or_undefined_metric_fails_its_gate(fairness: object) -> None:
    gates = KpiSpec(max_equalized_odds_difference=0.5)
    outcome = evaluate_gates(gates, {"auc": 0.9, "fairness": fairness})
    assert not outcome.promotable
    assert outcome.reasons == ("max_equalized_odds_difference: equalized_odds_difference is "
                               "missing or undefined, so the gate (<= 0.5) cannot pass",)
    assert outcome.checks["max_equalized_odds_difference"].value is None


def test_fairness_metrics_may_also_be_flat() -> None:
    gates = KpiSpec(max_demographic_parity_difference=0.2)
    assert evaluate_gates(gates, {"demographic_parity_difference": 0.1}).promotable
    assert not evaluate_gates(gates, {"demographic_parity_difference": 0.3}).promotable


def test_outcome_serialises_to_json_ready_data() -> None:
    data = evaluate_gates(KpiSpec(min_auc=0.95), {"auc": 0.9}).to_json()
    assert data == {"promotable": False,
                    "reasons": ["min_auc: auc 0.9000 is below the minimum 0.95"],
                    "checks": {"min_auc": {"metric": "auc", "bound": "min", "threshold": 0.95,
                                           "value": 0.9, "passed": False}}}

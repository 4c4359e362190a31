"""Federated feature importance at the coordinator: sites' means weighted by held-out rows."""

from __future__ import annotations

import pytest

from common.errors import ErrorCode, TesseraError
from server.importance import SiteImportance, aggregate_importance, parse_site_importance

FEATURES = ["age", "bmi", "bp"]


def _metrics(n: int, auc: dict[str, float] | None, loss: dict[str, float]) -> dict[str, float]:
    out = {"importance_n": float(n), "importance_repeats": 5.0}
    out.update({f"importance_log_loss:{f}": v for f, v in loss.items()})
    out.update({f"importance_auc:{f}": v for f, v in (auc or {}).items()})
    return out


def test_site_means_are_weighted_by_held_out_rows_and_ranked() -> None:
    small = parse_site_importance("h1", _metrics(100, {"age": 0.10, "bmi": 0.0, "bp": 0.02},
                                                 {"age": 0.2, "bmi": 0.0, "bp": 0.04}),
                                  FEATURES)
    large = parse_site_importance("h2", _metrics(300, {"age": 0.02, "bmi": 0.08, "bp": 0.02},
                                                 {"age": 0.04, "bmi": 0.12, "bp": 0.0}),
                                  FEATURES)
    result = aggregate_importance([small, large], FEATURES)
    assert list(result) == ["bmi", "age", "bp"]  # 0.06 > 0.04 > 0.02
    assert result["age"]["auc_drop"] == pytest.approx((100 * 0.10 + 300 * 0.02) / 400)
    assert result["bmi"]["auc_drop"] == pytest.approx(300 * 0.08 / 400)
    assert result["age"]["log_loss_increase"] == pytest.approx((100 * 0.2 + 300 * 0.04) / 400)
    assert [v["rank"] for v in result.values()] == [1, 2, 3]
    assert {v["n"] for v in result.values()} == {400}
    unweighted = (0.10 + 0.02) / 2
    assert result["age"]["auc_drop"] != pytest.approx(unweighted)


def test_a_site_without_auc_counts_only_towards_log_loss() -> None:
    with_auc = SiteImportance("h1", 100, {"age": 0.1, "bmi": 0.2, "bp": 0.3},
                              {"age": 0.1, "bmi": 0.1, "bp": 0.1})
    one_class = SiteImportance("h2", 100, {}, {"age": 0.3, "bmi": 0.3, "bp": 0.3})
    result = aggregate_importance([with_auc, one_class], FEATURES)
    assert result["bp"]["auc_drop"] == pytest.approx(0.3)
    assert result["bp"]["log_loss_increase"] == pytest.approx(0.2)
    only = aggregate_importance([one_class], FEATURES)
    assert {v["auc_drop"] for v in only.values()} == {None}
    assert aggregate_importance([], FEATURES) == {}


@pytest.mark.parametrize(("metrics", "problem"), [
    (_metrics(0, None, dict.fromkeys(FEATURES, 0.0)), "'importance_n' must be a positive"),
    (_metrics(10, None, {"age": 0.0, "bmi": 0.0}), "no log-loss increase for: bp"),
    ({**_metrics(10, None, dict.fromkeys(FEATURES, 0.0)), "importance_auc:height": 0.1},
     "unexpected key(s): importance_auc:height"),
    (_metrics(10, {"age": 0.1}, dict.fromkeys(FEATURES, 0.0)), "some features but not all"),
    (_metrics(10, None, {"age": float("nan"), "bmi": 0.0, "bp": 0.0}), "not a finite number"),
    ({**_metrics(10, None, dict.fromkeys(FEATURES, 0.0)), "importance_n": 2.5},
     "positive whole number"),
])
def test_malformed_site_replies_are_refused_naming_the_problem(metrics: dict[str, float],
                                                               problem: str) -> None:
    with pytest.raises(TesseraError) as caught:
        parse_site_importance("h1", metrics, FEATURES)
    assert caught.value.code is ErrorCode.BAD_ENVELOPE
    assert caught.value.message.startswith("importance reply of h1: ")
    assert problem in caught.value.message

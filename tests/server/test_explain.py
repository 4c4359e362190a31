"""Per-patient explanations: contributions that add up to the logit, exact for logreg."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.errors import TesseraError
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import ModelSpec
from server.explain import COMPLETENESS_TOL, explain

FEATURES = ["age", "bmi", "bp", "s1", "s2"]


def _model(kind: str, seed: int = 3) -> torch.nn.Module:
    spec = ModelSpec(kind="mlp", hidden=16, groups=4) if kind == "mlp" else ModelSpec(kind=kind)
    model = build_model(spec, n_features=len(FEATURES), seed=seed)
    values, layout = model_to_vector(model)
    vector_to_model(model, np.random.default_rng(seed).normal(0.0, 0.7, values.size), layout)
    return model


def _rows(n: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(FEATURES)))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_logreg_contributions_are_the_exact_weighted_inputs() -> None:
    model, X = _model("logreg"), _rows()
    got = explain(model, X, FEATURES)
    weight = model.linear.weight.detach().double().numpy()[0]
    bias = float(model.linear.bias.detach().double()[0])
    assert got.method == "exact-linear" and got.max_gap == 0.0
    np.testing.assert_array_equal(got.contributions, X * weight)
    assert got.baseline_logit == bias
    scores = predict_scores(model, X)
    np.testing.assert_allclose(got.contributions.sum(axis=1),
                               _logit(scores) - _logit(predict_scores(model, X[:1] * 0)),
                               atol=1e-4)


def test_mlp_integrated_gradients_add_up_to_the_logit_difference() -> None:
    model, X = _model("mlp"), _rows()
    got = explain(model, X, FEATURES)
    assert got.method == "integrated-gradients"
    assert got.max_gap <= COMPLETENESS_TOL
    baseline_score = predict_scores(model, np.zeros((1, len(FEATURES))))
    scores = predict_scores(model, X)
    usable = (scores > 1e-4) & (scores < 1 - 1e-4)  # float32 scores keep the logit precise
    assert usable.mean() > 0.8
    completeness = got.contributions.sum(axis=1) - (_logit(scores) - _logit(baseline_score))
    assert np.abs(completeness[usable]).max() < COMPLETENESS_TOL + 1e-4
    assert np.abs(got.contributions).max() > 0.1  # not trivially zero


def test_a_fixed_step_count_would_miss_completeness_so_rows_are_refined() -> None:
    model, X = _model("mlp"), _rows()
    coarse = explain(model, X, FEATURES, steps=64, max_steps=64)
    assert coarse.max_gap > COMPLETENESS_TOL
    assert explain(model, X, FEATURES).max_gap <= COMPLETENESS_TOL


def test_a_feature_the_mlp_does_not_read_gets_zero_contribution() -> None:
    model, X = _model("mlp"), _rows(50)
    with torch.no_grad():
        model.fc1.weight[:, 2] = 0.0
    got = explain(model, X, FEATURES)
    assert np.all(got.contributions[:, 2] == 0.0)
    assert all("bp" not in top for top in got.top(3))


def test_top_features_are_ranked_by_absolute_contribution() -> None:
    model = _model("logreg")
    X = np.zeros((1, len(FEATURES)))
    weight = model.linear.weight.detach().double().numpy()[0]
    X[0] = 1.0 / weight  # contribution 1 for every feature ...
    X[0, 3] = -5.0 / weight[3]  # ... but s1 pushes the logit down by 5
    X[0, 1] = 2.0 / weight[1]
    assert explain(model, X, FEATURES).top(3) == [["s1", "bmi", "age"]]


def test_rows_must_match_the_features() -> None:
    with pytest.raises(TesseraError, match="explain: X must be"):
        explain(_model("logreg"), np.zeros((2, 3)), FEATURES)

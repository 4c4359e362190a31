"""Feature importance of a study's final model, measured on a site's held-out rows:
permutation importance (plans without DP) and per-row mean-substitution loss rises (the
input of the differentially private release, :func:`substitution_rises`).

The site agent's ``importance`` task (:mod:`client_app.agent.evaluation`) hands this module
the verified final model and the site's standardised held-out split.
:func:`permutation_importance` shuffles one feature at a time, ``repeats`` times, and
measures how much the exact AUC drops and the mean log loss rises; the agent turns the result
into the reply's metrics map, which the coordinator averages across sites by held-out row
count (:mod:`server.importance`).

The shuffles are drawn from the study's public seed, so a site reproduces its own numbers;
the seed is not a privacy secret (it only decides row order). The same ``repeats``
permutations are used for every feature, so features are compared on equal draws. Only
these per-feature means and the row count leave the site.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score
from torch import nn

from common.errors import ErrorCode, TesseraError
from common.models import predict_scores

#: Shuffles per feature.
REPEATS = 5
#: Separates the shuffle stream from every other use of the study seed.
SEED_STREAM = 0x1A9F
#: Scores are clipped to [EPS, 1 - EPS] before the log loss (as in the evaluation counts).
EPS = 1e-12


@dataclass(frozen=True)
class SiteImportance:
    """One site's permutation importance: mean AUC drop and log-loss rise per feature.

    ``auc`` and every ``auc_drop`` are ``None`` when the held-out rows hold a single class
    (AUC is undefined there); the log-loss numbers are always defined.
    """

    n: int
    repeats: int
    auc: float | None
    log_loss: float
    auc_drop: dict[str, float | None]
    log_loss_increase: dict[str, float]


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, scores))


def _log_loss(y: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(scores, EPS, 1.0 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def permutation_importance(model: nn.Module, X: np.ndarray, y: np.ndarray,
                           features: tuple[str, ...] | list[str], *, seed: int,
                           repeats: int = REPEATS) -> SiteImportance:
    """Mean drop in AUC and rise in log loss when each feature's column is shuffled.

    ``X`` is the standardised held-out matrix (rows, features), ``y`` its 0/1 labels.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != len(features) or y.shape != (X.shape[0],):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "importance: X must be (rows, features) with one label per row")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "repeats: must be an integer >= 1")
    if X.shape[0] < 2:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "importance needs at least two held-out rows at this site")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SEED_STREAM]))
    orders = [rng.permutation(X.shape[0]) for _ in range(repeats)]
    base_scores = predict_scores(model, X)
    base_auc, base_loss = _auc(y, base_scores), _log_loss(y, base_scores)
    auc_drop: dict[str, float | None] = {}
    loss_rise: dict[str, float] = {}
    for j, name in enumerate(features):
        drops, rises = [], []
        shuffled = X.copy()
        for order in orders:
            shuffled[:, j] = X[order, j]
            scores = predict_scores(model, shuffled)
            rises.append(_log_loss(y, scores) - base_loss)
            if base_auc is not None:
                drops.append(base_auc - float(roc_auc_score(y, scores)))
        loss_rise[name] = float(np.mean(rises))
        auc_drop[name] = float(np.mean(drops)) if base_auc is not None else None
    return SiteImportance(n=int(X.shape[0]), repeats=repeats, auc=base_auc, log_loss=base_loss,
                          auc_drop=auc_drop, log_loss_increase=loss_rise)


def _row_log_loss(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    p = np.clip(scores, EPS, 1.0 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def substitution_rises(model: nn.Module, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row and feature, the rise in the row's log loss when that feature is replaced by
    the federation mean (0 in the standardised matrix ``X``): shape (rows, features).

    Unlike a permutation, a row's numbers depend on that row alone, which is what lets the
    differentially private release (privacy/dp_evaluation.py) bound one row's influence.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "importance: X must be (rows, features) with one label per row")
    base = _row_log_loss(y, predict_scores(model, X))
    rises = np.empty_like(X)
    for j in range(X.shape[1]):
        substituted = X.copy()
        substituted[:, j] = 0.0
        rises[:, j] = _row_log_loss(y, predict_scores(model, substituted)) - base
    return rises

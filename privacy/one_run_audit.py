"""Empirical privacy auditing in one training run (Steinke, Nasr & Jagielski, NeurIPS 2023).

This module owns the statistics of the audit, pure functions over plain values. ``m``
canaries are each included in training independently with probability 1/2; after training,
an auditor scores every canary, guesses "included" for the highest scores and "excluded"
for the lowest, and abstains on the rest. If training is (epsilon, delta)-DP with respect
to each canary, the number of correct guesses among ``r`` is at most a Binomial(r,
e^eps / (1 + e^eps)) plus a delta term (their Theorem 3 / Proposition 5.2), which gives a
p-value for every epsilon (:func:`p_value`, the paper's appendix algorithm) and so a lower
bound on epsilon at a confidence level (:func:`epsilon_lower_bound`).

:func:`audit_scores` tries a fixed, pre-declared list of guessing strategies (how many top
and bottom scores to guess) and reports the best bound, each strategy tested at
``(1 - confidence) / len(strategies)`` (Bonferroni), so the best of them still holds at
``confidence`` overall.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from common.errors import ErrorCode, TesseraError

#: Guessing strategies as (fraction of canaries guessed "in" from the top, fraction guessed
#: "out" from the bottom).
DEFAULT_STRATEGIES: tuple[tuple[float, float], ...] = (
    (0.01, 0.0), (0.02, 0.0), (0.05, 0.0), (0.1, 0.0), (0.2, 0.0),
    (0.005, 0.005), (0.01, 0.01), (0.025, 0.025), (0.05, 0.05), (0.1, 0.1),
)


@dataclass(frozen=True)
class AuditBound:
    """The best lower bound an audit found, and the guesses behind it."""

    epsilon_lower_bound: float
    canaries: int
    guesses: int
    correct: int
    guessed_in: int
    guessed_out: int
    confidence: float
    strategies: int


def p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Probability of at least ``correct`` right guesses out of ``guesses`` under (eps, delta)-DP.

    ``canaries`` (m) counts every canary, guessed or not; it scales the delta term.
    """
    m, r, v = canaries, guesses, correct
    if not 0 <= v <= r <= m:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"correct: need 0 <= correct <= guesses <= canaries, got {v}, {r}, {m}",
        )
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of eps-DP randomized response
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    if v > 0 and delta > 0:
        # alpha = max_i P[v > Binomial(r, q) >= v - i] / i, i = 1..v
        below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)
        alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(1.0, beta + alpha * delta * 2 * m)


def epsilon_lower_bound(
    *, canaries: int, guesses: int, correct: int, delta: float, confidence: float
) -> float:
    """Largest epsilon rejected at ``confidence``: training is not (eps, delta)-DP for any less.

    Bisection on :func:`p_value` to 1e-6; ``0.0`` when no positive epsilon is rejected.
    """
    if not 0 < confidence < 1:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"confidence: must be in (0, 1), got {confidence!r}"
        )
    level = 1.0 - confidence

    def rejected(eps: float) -> bool:
        return p_value(canaries=canaries, guesses=guesses, correct=correct, epsilon=eps,
                       delta=delta) < level

    if guesses == 0 or not rejected(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while rejected(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if rejected(mid):
            lo = mid
        else:
            hi = mid
    return lo


def audit_scores(
    scores: Sequence[float] | np.ndarray,
    included: Sequence[bool] | np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    strategies: Sequence[tuple[float, float]] = DEFAULT_STRATEGIES,
) -> AuditBound:
    """The best epsilon lower bound over ``strategies`` (Bonferroni-corrected).

    ``scores[i]`` is the auditor's score of canary ``i`` (higher: more likely included);
    ``included[i]`` whether it really was. Ties are broken by canary index, so the guesses
    depend on the scores only.
    """
    score = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(included, dtype=bool)
    m = len(score)
    if score.ndim != 1 or truth.shape != score.shape or m < 1 or not np.all(np.isfinite(score)):
        raise TesseraError(
            ErrorCode.DATA_INVALID,
            "scores: must be finite, one per canary, matching included",
        )
    if not strategies or any(
        not (0 <= top <= 1 and 0 <= bottom <= 1 and top + bottom <= 1)
        for top, bottom in strategies
    ):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            "strategies: at least one (top, bottom) pair of fractions in [0, 1], summing to <= 1",
        )
    order = np.argsort(-score, kind="stable")  # highest first
    per_test = 1.0 - (1.0 - confidence) / len(strategies)
    best = AuditBound(0.0, m, 0, 0, 0, 0, confidence, len(strategies))
    for top_fraction, bottom_fraction in strategies:
        k_in = min(m, round(top_fraction * m))
        k_out = min(m - k_in, round(bottom_fraction * m))
        correct = int(truth[order[:k_in]].sum())
        if k_out:
            correct += int((~truth[order[m - k_out :]]).sum())
        bound = epsilon_lower_bound(canaries=m, guesses=k_in + k_out, correct=correct,
                                    delta=delta, confidence=per_test)
        if bound > best.epsilon_lower_bound:
            best = AuditBound(bound, m, k_in + k_out, correct, k_in, k_out, confidence,
                              len(strategies))
    return best

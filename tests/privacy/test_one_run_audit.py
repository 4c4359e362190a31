"""Behaviour of the one-run privacy audit: its p-values and bounds, its soundness on a
mechanism whose privacy is known exactly, its power against an under-noised one, and the
audit script run on the real DP-SGD path."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

from common.errors import ErrorCode, TesseraError
from privacy.accounting import GaussianRelease, epsilon_for_history
from privacy.one_run_audit import audit_scores, epsilon_lower_bound, p_value

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "privacy_audit.py"
DELTA = 1e-5


def _paper_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The appendix algorithm of Steinke, Nasr & Jagielski (2023), loop for loop."""
    q = 1 / (1 + math.exp(-eps))
    beta = stats.binom.sf(v - 1, r, q)
    alpha, total = 0.0, 0.0
    for i in range(1, v + 1):
        total += stats.binom.pmf(v - i, r, q)
        if total > i * alpha:
            alpha = total / i
    return min(float(beta + alpha * delta * 2 * m), 1.0)


@pytest.mark.parametrize(
    ("m", "r", "v", "eps", "delta"),
    [(1000, 100, 90, 1.0, 1e-5), (5000, 250, 237, 2.0, 1e-5), (100, 10, 3, 0.5, 1e-3),
     (1000, 100, 100, 3.0, 0.0)],
)
def test_p_value_is_the_papers_algorithm(m: int, r: int, v: int, eps: float, delta: float) -> None:
    got = p_value(canaries=m, guesses=r, correct=v, epsilon=eps, delta=delta)

    assert got == pytest.approx(_paper_p_value(m, r, v, eps, delta), rel=1e-9)


def test_pure_dp_bound_solves_the_binomial_tail_at_the_confidence() -> None:
    # delta = 0: the bound is the eps where P[Binomial(100, e^eps/(1+e^eps)) >= 90] = 5%.
    def tail(eps: float) -> float:
        return float(stats.binom.sf(89, 100, 1 / (1 + math.exp(-eps)))) - 0.05

    expected = optimize.brentq(tail, 0, 20)

    got = epsilon_lower_bound(canaries=1000, guesses=100, correct=90, delta=0.0,
                              confidence=0.95)

    assert got == pytest.approx(expected, abs=1e-5)
    assert got == pytest.approx(1.6308, abs=1e-4)  # golden
    # Delta can only weaken the bound; chance-level guessing proves nothing.
    assert epsilon_lower_bound(canaries=1000, guesses=100, correct=90, delta=DELTA,
                               confidence=0.95) < got
    assert epsilon_lower_bound(canaries=1000, guesses=100, correct=50, delta=DELTA,
                               confidence=0.95) == 0.0


def _randomized_response_scores(
    rng: np.random.Generator, *, m: int, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of an exactly eps-DP mechanism: each canary's bit, flipped w.p. 1/(1+e^eps)."""
    included = rng.random(m) < 0.5
    keep = rng.random(m) < math.exp(epsilon) / (1 + math.exp(epsilon))
    reported = np.where(keep, included, ~included)
    return reported + 0.01 * rng.random(m), included


def test_the_bound_stays_below_the_true_epsilon_of_an_exact_mechanism() -> None:
    rng = np.random.default_rng(2023)
    bounds = [
        audit_scores(*_randomized_response_scores(rng, m=2000, epsilon=2.0), delta=0.0)
        for _ in range(100)
    ]

    above = sum(b.epsilon_lower_bound > 2.0 for b in bounds)
    assert above <= 5  # at most 5% of audits at 95% confidence (here typically none)
    # Randomized response is the worst case the theorem is tight for: the audit has power.
    assert np.median([b.epsilon_lower_bound for b in bounds]) > 1.5


def _gaussian_scores(
    rng: np.random.Generator, *, m: int, noise_multiplier: float, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """White-box scores of ``count`` full-batch Gaussian steps with unit-norm canaries."""
    included = rng.random(m) < 0.5
    noise = rng.normal(0.0, noise_multiplier * math.sqrt(count), size=m)
    return count * included + noise, included


def test_an_under_noised_mechanism_is_caught_claiming_its_planned_epsilon() -> None:
    rng = np.random.default_rng(7)
    planned = 6.0  # noise multiplier the claim is computed for
    claimed = epsilon_for_history([GaussianRelease(planned, 10)], delta=DELTA)

    honest = audit_scores(*_gaussian_scores(rng, m=5000, noise_multiplier=planned, count=10),
                          delta=DELTA)
    broken = audit_scores(*_gaussian_scores(rng, m=5000, noise_multiplier=planned / 4,
                                            count=10), delta=DELTA)

    assert 0 < honest.epsilon_lower_bound < claimed
    assert broken.epsilon_lower_bound > claimed


def test_audit_reports_its_guesses_and_refuses_malformed_input() -> None:
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0] * 100)
    included = scores > 2.5

    bound = audit_scores(scores, included, delta=DELTA, strategies=[(0.1, 0.1)])

    assert (bound.guesses, bound.correct, bound.guessed_in, bound.guessed_out) == (120, 120,
                                                                                   60, 60)
    assert bound.canaries == 600 and bound.strategies == 1 and bound.confidence == 0.95
    with pytest.raises(TesseraError) as info:
        audit_scores([1.0, math.nan], [True, False], delta=DELTA)
    assert info.value.code is ErrorCode.DATA_INVALID
    with pytest.raises(TesseraError, match="strategies"):
        audit_scores(scores, included, delta=DELTA, strategies=[(0.8, 0.5)])
    with pytest.raises(TesseraError, match="confidence"):
        epsilon_lower_bound(canaries=10, guesses=5, correct=5, delta=DELTA, confidence=1.0)
    with pytest.raises(TesseraError, match="correct"):
        p_value(canaries=10, guesses=5, correct=6, epsilon=1.0, delta=DELTA)


def test_audit_script_runs_dp_sgd_with_canaries_and_stays_below_the_claim(
    tmp_path: Path,
) -> None:
    out = tmp_path / "audit.json"

    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--epsilons", "8", "--canaries", "2000",
         "--seed", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    (run,) = doc["runs"]
    assert doc["exceeded"] == []
    assert run["target_epsilon"] == 8.0
    assert 8.0 - 1e-3 <= run["claimed_epsilon"] <= 8.0
    assert run["confidence"] == 0.95 and run["canaries"] == 2000
    assert 0.5 < run["epsilon_lower_bound"] < run["claimed_epsilon"]  # power, and no alarm
    assert run["steps"] > 0 and 0 < run["sample_rate"] < 1

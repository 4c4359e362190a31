"""Behaviour of the RDP cross-check accountant and the fast RDP bracket of noise calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from privacy.mechanisms import DpStep, GaussianRelease
from privacy.rdp import integer_order_epsilon, rdp_epsilon_for_history, rdp_noise_upper_bound

DELTA = 1e-5

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the:UserWarning")


def _balle_epsilon(orders: np.ndarray, rdp: np.ndarray, delta: float) -> float:
    """RDP -> (epsilon, delta), Balle et al. 2020, Theorem 21 (the conversion Opacus uses)."""
    eps = rdp - (math.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    return float(np.min(eps))


def _sampled_gaussian_rdp_integer(q: float, sigma: float, order: int) -> float:
    """RDP of one Poisson-sampled Gaussian step at an integer order (Mironov et al. 2019)."""
    log_terms = np.array(
        [
            math.log(math.comb(order, k))
            + (order - k) * math.log1p(-q)
            + k * math.log(q)
            + (k * k - k) / (2 * sigma**2)
            for k in range(order + 1)
        ]
    )
    top = log_terms.max()
    return float(top + math.log(np.exp(log_terms - top).sum())) / (order - 1)


def test_rdp_of_history_equals_one_continuous_opacus_accountant() -> None:
    # Two rounds of study A, one round of study B at other settings, one more round of A.
    history = [
        DpStep(noise_multiplier=2.0, sample_rate=64 / 455, steps=70),
        DpStep(noise_multiplier=2.0, sample_rate=64 / 455, steps=70),
        DpStep(noise_multiplier=4.0, sample_rate=0.05, steps=40),
        DpStep(noise_multiplier=2.0, sample_rate=64 / 455, steps=70),
    ]
    accountant = RDPAccountant()
    for item in history:
        for _ in range(item.steps):
            accountant.step(noise_multiplier=item.noise_multiplier, sample_rate=item.sample_rate)

    epsilon = rdp_epsilon_for_history(history, delta=DELTA)

    assert epsilon == accountant.get_epsilon(delta=DELTA)
    assert epsilon > rdp_epsilon_for_history(history[:3], delta=DELTA) > 0


def test_full_batch_rdp_matches_gaussian_closed_form() -> None:
    # With sample rate 1 each step is a Gaussian mechanism: RDP(alpha) = alpha / (2 sigma^2).
    sigma, steps = 2.0, 10
    orders = np.array(RDPAccountant.DEFAULT_ALPHAS, dtype=float)
    expected = _balle_epsilon(orders, steps * orders / (2 * sigma**2), DELTA)

    assert rdp_epsilon_for_history([DpStep(sigma, 1.0, steps)], delta=DELTA) == pytest.approx(
        expected, rel=1e-12
    )
    assert rdp_epsilon_for_history([GaussianRelease(sigma, steps)], delta=DELTA) == pytest.approx(
        expected, rel=1e-12
    )


def test_subsampled_rdp_agrees_with_integer_order_binomial_expansion() -> None:
    q, sigma, steps = 64 / 455, 1.5, 280
    orders = np.array([a for a in RDPAccountant.DEFAULT_ALPHAS if float(a).is_integer()])
    rdp = np.array([steps * _sampled_gaussian_rdp_integer(q, sigma, int(a)) for a in orders])
    integer_only = _balle_epsilon(orders, rdp, DELTA)

    got = rdp_epsilon_for_history([DpStep(sigma, q, steps)], delta=DELTA)

    # Opacus also tries fractional orders, so it can only be tighter, and only slightly.
    assert got <= integer_only + 1e-9
    assert got == pytest.approx(integer_only, rel=0.03)


@pytest.mark.parametrize(
    ("sigma", "q", "steps"),
    [(1.5, 64 / 455, 280), (1.0, 32 / 152, 24), (4.0, 0.0256, 1170), (2.0, 1.0, 10)],
)
def test_fast_integer_order_bound_is_never_below_opacus(sigma: float, q: float, steps: int) -> None:
    fast = integer_order_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    opacus = rdp_epsilon_for_history([DpStep(sigma, q, steps)], delta=DELTA)

    # Equal (to rounding) when Opacus's best order is an integer one.
    assert opacus * (1 - 1e-9) <= fast <= opacus * 1.03


def test_rdp_bracket_reaches_the_target_with_little_to_spare() -> None:
    q, steps, target = 32 / 152, 24, 3.0

    sigma = rdp_noise_upper_bound(
        target_epsilon=target, delta=DELTA, sample_rate=q, steps=steps, ceiling=1e4
    )

    assert sigma is not None
    assert integer_order_epsilon(
        noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA
    ) <= target
    assert integer_order_epsilon(
        noise_multiplier=sigma * 0.995, sample_rate=q, steps=steps, delta=DELTA
    ) > target


def test_rdp_bracket_says_none_when_rdp_cannot_reach_the_target() -> None:
    assert (
        rdp_noise_upper_bound(
            target_epsilon=1e-3, delta=DELTA, sample_rate=1.0, steps=1, ceiling=100.0
        )
        is None
    )

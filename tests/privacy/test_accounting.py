"""Behaviour of DP accounting: sampling plans, noise for a target, epsilon of a ledger history."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.data_loader import DPDataLoader
from torch.utils.data import TensorDataset

from common.errors import ErrorCode, TesseraError
from privacy.accounting import (
    EPSILON_TOLERANCE,
    DpStep,
    epsilon_for_history,
    noise_for_target,
    plan_sampling,
    steps_per_epoch,
)

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


@pytest.fixture(scope="module")
def sigma_eps3_70_steps() -> float:
    """Noise for epsilon 3 over 70 steps at 64 of 455 (10 local epochs, or 5 rounds x 2)."""
    sample_rate, steps = plan_sampling(n_train=455, batch_size=64, epochs=10)
    return noise_for_target(target_epsilon=3.0, delta=DELTA, sample_rate=sample_rate, steps=steps)


@pytest.mark.parametrize(
    ("n", "batch"), [(455, 64), (300, 100), (49, 7), (100, 100), (10, 64), (1000, 1), (997, 13)]
)
def test_steps_per_epoch_equals_opacus_dp_loader_length(n: int, batch: int) -> None:
    sample_rate, steps = plan_sampling(n_train=n, batch_size=batch, epochs=1)
    loader = DPDataLoader(
        TensorDataset(torch.zeros(n, 1)),
        sample_rate=sample_rate,
        generator=torch.Generator().manual_seed(0),
    )
    assert steps == steps_per_epoch(sample_rate=sample_rate) == len(loader)
    assert sum(1 for _ in loader) == steps


def test_plan_sampling_golden_values() -> None:
    assert plan_sampling(n_train=455, batch_size=64, epochs=40) == (64 / 455, 280)
    assert plan_sampling(n_train=10, batch_size=64, epochs=3) == (1.0, 3)
    assert plan_sampling(n_train=1000, batch_size=1, epochs=2) == (0.001, 2000)


def test_epsilon_of_history_equals_one_continuous_opacus_accountant() -> None:
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

    epsilon = epsilon_for_history(history, delta=DELTA)

    assert epsilon == accountant.get_epsilon(delta=DELTA)
    assert epsilon > epsilon_for_history(history[:3], delta=DELTA) > 0


def test_empty_history_has_spent_nothing() -> None:
    assert epsilon_for_history([], delta=DELTA) == 0.0


def test_full_batch_epsilon_matches_gaussian_closed_form() -> None:
    # With sample rate 1 each step is a Gaussian mechanism: RDP(alpha) = alpha / (2 sigma^2).
    sigma, steps = 2.0, 10
    orders = np.array(RDPAccountant.DEFAULT_ALPHAS, dtype=float)
    expected = _balle_epsilon(orders, steps * orders / (2 * sigma**2), DELTA)

    got = epsilon_for_history([DpStep(sigma, 1.0, steps)], delta=DELTA)

    assert got == pytest.approx(expected, rel=1e-12)


def test_subsampled_epsilon_agrees_with_integer_order_binomial_expansion() -> None:
    q, sigma, steps = 64 / 455, 1.5, 280
    orders = np.array([a for a in RDPAccountant.DEFAULT_ALPHAS if float(a).is_integer()])
    rdp = np.array([steps * _sampled_gaussian_rdp_integer(q, sigma, int(a)) for a in orders])
    integer_only = _balle_epsilon(orders, rdp, DELTA)

    got = epsilon_for_history([DpStep(sigma, q, steps)], delta=DELTA)

    # Opacus also tries fractional orders, so it can only be tighter, and only slightly.
    assert got <= integer_only + 1e-9
    assert got == pytest.approx(integer_only, rel=0.03)


def test_noise_for_target_round_trips_to_just_under_the_target(sigma_eps3_70_steps: float) -> None:
    sample_rate, steps = plan_sampling(n_train=455, batch_size=64, epochs=10)

    spent = epsilon_for_history([DpStep(sigma_eps3_70_steps, sample_rate, steps)], delta=DELTA)

    assert sigma_eps3_70_steps == pytest.approx(2.0596, abs=2e-3)  # golden, Opacus 1.6 RDP
    assert 3.0 - EPSILON_TOLERANCE <= spent <= 3.0
    # Slightly less noise must overshoot: the multiplier is the smallest that fits.
    less = epsilon_for_history(
        [DpStep(sigma_eps3_70_steps * 0.99, sample_rate, steps)], delta=DELTA
    )
    assert less > 3.0


def test_noise_set_once_for_all_rounds_keeps_the_ledger_within_target(
    sigma_eps3_70_steps: float,
) -> None:
    rounds, local_epochs = 5, 2
    sample_rate, steps_per_round = plan_sampling(n_train=455, batch_size=64, epochs=local_epochs)
    assert rounds * steps_per_round == 70  # the fixture's plan

    ledger = [DpStep(sigma_eps3_70_steps, sample_rate, steps_per_round) for _ in range(rounds)]
    first_round = epsilon_for_history(ledger[:1], delta=DELTA)
    all_rounds = epsilon_for_history(ledger, delta=DELTA)

    assert 0 < first_round < all_rounds
    assert 3.0 - EPSILON_TOLERANCE <= all_rounds <= 3.0
    assert epsilon_for_history([*ledger, ledger[0]], delta=DELTA) > 3.0


def test_unreachable_target_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TesseraError) as info:
        noise_for_target(target_epsilon=0.01, delta=DELTA, sample_rate=1.0, steps=1)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert "target_epsilon" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"noise_multiplier": 0.0, "sample_rate": 0.1, "steps": 1}, "noise_multiplier"),
        ({"noise_multiplier": math.nan, "sample_rate": 0.1, "steps": 1}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.0, "steps": 1}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5, "steps": 1}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 0}, "steps"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 2.0}, "steps"),
    ],
)
def test_dp_step_rejects_invalid_values_naming_the_parameter(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(TesseraError) as info:
        DpStep(**kwargs)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith(name)


def test_invalid_plan_and_delta_are_refused() -> None:
    with pytest.raises(TesseraError, match="batch_size"):
        plan_sampling(n_train=100, batch_size=0, epochs=1)
    with pytest.raises(TesseraError, match="n_train"):
        plan_sampling(n_train=0, batch_size=10, epochs=1)
    with pytest.raises(TesseraError, match="delta"):
        epsilon_for_history([DpStep(1.0, 0.1, 1)], delta=0.0)
    with pytest.raises(TesseraError, match=r"history\[0\]"):
        epsilon_for_history([(1.0, 0.1, 1)], delta=DELTA)  # type: ignore[list-item]

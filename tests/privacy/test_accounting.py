"""Behaviour of DP accounting: sampling plans, noise for a target, the PLD epsilon of a ledger
history, checked against Google's dp-accounting run independently at a finer discretisation."""

from __future__ import annotations

import math

import dp_accounting
import pytest
import torch
from dp_accounting.pld import pld_privacy_accountant
from opacus.data_loader import DPDataLoader
from torch.utils.data import TensorDataset

from common.errors import ErrorCode, TesseraError
from privacy.accounting import (
    EPSILON_TOLERANCE,
    DpStep,
    GaussianRelease,
    epsilon_for_history,
    noise_for_target,
    plan_sampling,
    rdp_epsilon_for_history,
    steps_per_epoch,
)

DELTA = 1e-5
#: The independent accountant's grid: ten times finer than the ledger's.
REFERENCE_DISCRETISATION = 1e-4

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the:UserWarning")


def _reference_epsilon(history: list[DpStep | GaussianRelease], delta: float = DELTA) -> float:
    """dp-accounting's own PLD accountant, event by event, at a finer discretisation."""
    accountant = pld_privacy_accountant.PLDAccountant(
        value_discretization_interval=REFERENCE_DISCRETISATION
    )
    for item in history:
        if isinstance(item, DpStep):
            event = dp_accounting.PoissonSampledDpEvent(
                item.sample_rate, dp_accounting.GaussianDpEvent(item.noise_multiplier)
            )
            accountant.compose(event, item.steps)
        else:
            accountant.compose(dp_accounting.GaussianDpEvent(item.noise_multiplier), item.count)
    return float(accountant.get_epsilon(delta))


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


@pytest.mark.parametrize(
    ("history", "golden"),
    [
        # One study of 70 steps at 64 of 455.
        ([DpStep(2.0, 64 / 455, 70)], 2.8276),
        # Two rounds of study A, one round of study B at other settings, one more round of A.
        (
            [
                DpStep(2.0, 64 / 455, 70),
                DpStep(2.0, 64 / 455, 70),
                DpStep(4.0, 0.05, 40),
                DpStep(2.0, 64 / 455, 70),
            ],
            5.0784,
        ),
        # The demo's shape (one site of ~150 rows, batch 32, 3 rounds x 2 epochs) at sigma 1.
        ([DpStep(1.0, 32 / 152, 24)], 7.5112),
        # 10k rows, batch 256, 30 epochs.
        ([DpStep(1.0, 256 / 10_000, 1170)], 5.5702),
        # Four Gaussian releases of statistics, and statistics joining a DP-SGD history.
        ([GaussianRelease(10.0, 4)], 0.7255),
        ([DpStep(1.5, 0.1, 100), GaussianRelease(20.0, 2)], 3.5489),
    ],
)
def test_ledger_epsilon_is_never_below_an_independent_finer_pld(
    history: list[DpStep | GaussianRelease], golden: float
) -> None:
    reference = _reference_epsilon(history)

    ours = epsilon_for_history(history, delta=DELTA)

    assert reference == pytest.approx(golden, abs=1e-4)  # dp-accounting 0.6, d = 1e-4
    assert reference <= ours <= reference * 1.01
    # The looser RDP cross-check stays an upper bound too.
    assert rdp_epsilon_for_history(history, delta=DELTA) > ours


def test_history_order_and_splitting_do_not_change_epsilon() -> None:
    a, b = DpStep(2.0, 64 / 455, 14), DpStep(4.0, 0.05, 40)
    release = GaussianRelease(8.0, 1)

    together = epsilon_for_history([DpStep(2.0, 64 / 455, 42), b, release, release], delta=DELTA)

    assert epsilon_for_history([a, release, b, a, release, a], delta=DELTA) == together
    assert epsilon_for_history([release, a, a, a, b, release], delta=DELTA) == together


def test_gaussian_releases_compose_like_one_with_less_noise() -> None:
    # k Gaussian releases at noise multiplier z compose exactly to one at z / sqrt(k).
    four = epsilon_for_history([GaussianRelease(10.0, 4)], delta=DELTA)
    one = epsilon_for_history([GaussianRelease(5.0)], delta=DELTA)

    assert four == pytest.approx(one, rel=1e-9)
    # A full-batch DP-SGD run is the same Gaussian mechanism.
    assert epsilon_for_history([DpStep(10.0, 1.0, 4)], delta=DELTA) == pytest.approx(four, rel=1e-9)


def test_empty_history_has_spent_nothing() -> None:
    assert epsilon_for_history([], delta=DELTA) == 0.0


def test_noise_for_target_round_trips_to_just_under_the_target(sigma_eps3_70_steps: float) -> None:
    sample_rate, steps = plan_sampling(n_train=455, batch_size=64, epochs=10)

    spent = epsilon_for_history([DpStep(sigma_eps3_70_steps, sample_rate, steps)], delta=DELTA)

    assert sigma_eps3_70_steps == pytest.approx(1.9161, abs=2e-3)  # golden, PLD (RDP: 2.0596)
    assert 3.0 - EPSILON_TOLERANCE <= spent <= 3.0
    assert spent >= _reference_epsilon([DpStep(sigma_eps3_70_steps, sample_rate, steps)])
    # Slightly less noise must overshoot: the multiplier is the smallest that fits.
    less = epsilon_for_history(
        [DpStep(sigma_eps3_70_steps * 0.99, sample_rate, steps)], delta=DELTA
    )
    assert less > 3.0


@pytest.mark.parametrize(
    ("n", "batch", "epochs", "target"),
    [
        (152, 32, 6, 1.0),  # the demo: ~150 rows a site, batch 32, 3 rounds x 2 epochs
        (152, 32, 6, 3.0),
        (152, 32, 6, 8.0),
        (10_000, 256, 30, 3.0),
        (20, 64, 3, 2.0),  # full batch: a Gaussian mechanism
    ],
)
def test_pld_needs_less_noise_than_rdp_for_the_same_target(
    n: int, batch: int, epochs: int, target: float
) -> None:
    sample_rate, steps = plan_sampling(n_train=n, batch_size=batch, epochs=epochs)

    pld = noise_for_target(target_epsilon=target, delta=DELTA, sample_rate=sample_rate, steps=steps)

    rdp_spent = rdp_epsilon_for_history([DpStep(pld, sample_rate, steps)], delta=DELTA)
    assert rdp_spent > target  # RDP would call this noise too little...
    # ...and would need more noise to reach the same target: find how much more.
    rdp = pld
    while rdp_epsilon_for_history([DpStep(rdp, sample_rate, steps)], delta=DELTA) > target:
        rdp *= 1.005
    assert 1.01 < rdp / pld < 1.15


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


def test_noise_for_target_is_cached_per_plan() -> None:
    noise_for_target.cache_clear()
    kwargs = {"target_epsilon": 2.5, "delta": DELTA, "sample_rate": 0.1, "steps": 50}

    first = noise_for_target(**kwargs)  # type: ignore[arg-type]
    second = noise_for_target(**kwargs)  # type: ignore[arg-type]

    assert first == second
    assert noise_for_target.cache_info().hits == 1


def test_unreachable_target_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TesseraError) as info:
        noise_for_target(target_epsilon=1e-5, delta=DELTA, sample_rate=1.0, steps=1)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert "target_epsilon" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"target_epsilon": math.inf}, "target_epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"steps": 0}, "steps"),
    ],
)
def test_noise_for_target_refuses_invalid_values_naming_the_parameter(
    kwargs: dict[str, float], name: str
) -> None:
    arguments: dict[str, float] = {
        "target_epsilon": 1.0, "delta": DELTA, "sample_rate": 0.1, "steps": 10
    }
    arguments.update(kwargs)
    with pytest.raises(TesseraError) as info:
        noise_for_target(**arguments)  # type: ignore[arg-type]
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

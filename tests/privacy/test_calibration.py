"""Behaviour of noise calibration at the edges of the plans a study can make: the returned
noise always reaches the target on the ledger's own computation and on a finer one, and is
the smallest that does (to the tolerance)."""

from __future__ import annotations

import pytest

from privacy.calibration import LEDGER_DISCRETISATION, calibrate_noise
from privacy.mechanisms import DpStep
from privacy.pld import pld_epsilon

DELTA = 1e-5
TOLERANCE = 1e-3


@pytest.mark.parametrize(
    ("sample_rate", "steps", "target"),
    [
        (1.0, 1, 0.5),  # one full-batch step: a single Gaussian mechanism
        (1.0, 30, 3.0),
        (0.5, 3, 30.0),  # a very loose target
        (32 / 152, 24, 0.1),  # a very tight target on the demo's shape
        (0.002, 3000, 1.0),  # tiny batches, many steps
    ],
)
def test_calibrated_noise_reaches_the_target_and_no_less_noise_does(
    sample_rate: float, steps: int, target: float
) -> None:
    sigma = calibrate_noise(target_epsilon=target, delta=DELTA, sample_rate=sample_rate,
                            steps=steps, tolerance=TOLERANCE)

    def epsilon(noise: float, discretisation: float = LEDGER_DISCRETISATION) -> float:
        return pld_epsilon([DpStep(noise, sample_rate, steps)], delta=DELTA,
                           discretisation=discretisation)

    assert target - TOLERANCE <= epsilon(sigma) <= target
    assert epsilon(sigma, discretisation=LEDGER_DISCRETISATION / 5) <= target
    assert epsilon(sigma * 0.98) > target

"""Differential-privacy accounting for a site's budget: sampling plans, noise, epsilon spent.

This module is the front door to the arithmetic behind a site's privacy budget. Everything
here is a pure function over plain values, so that anyone holding a site's ledger (every
release, each with its mechanism and parameters, per dataset, across rounds and studies) can
recompute the epsilon spent:

- the **ledger figure** is a pessimistic privacy-loss-distribution (PLD) epsilon
  (:mod:`privacy.pld`, Google's ``dp-accounting``): tight, and never below the true epsilon;
- the **cross-check** is Opacus's Renyi-DP accountant (:func:`rdp_epsilon_for_history`,
  from :mod:`privacy.rdp`), a looser independent upper bound (about 4-5% more noise for the
  same target).

A history mixes DP-SGD runs (:class:`DpStep`) and Gaussian-mechanism releases of statistics
or evaluation counts (:class:`GaussianRelease`); :func:`mechanism_from_json` reads the JSON
form (``to_json()``) back.

Federation use: the noise multiplier is fixed once per study, with :func:`noise_for_target`
over all planned steps (rounds x local epochs, see :func:`plan_sampling`); the ledger then
composes the history of every release on a dataset with :func:`epsilon_for_history`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from privacy.calibration import LEDGER_DISCRETISATION, MAX_NOISE_MULTIPLIER, calibrate_noise
from privacy.mechanisms import (
    DpStep,
    GaussianRelease,
    Mechanism,
    check_count,
    check_delta,
    check_epsilon,
    check_sample_rate,
    mechanism_from_json,
)
from privacy.pld import pld_epsilon
from privacy.rdp import rdp_epsilon_for_history

__all__ = [
    "EPSILON_TOLERANCE",
    "LEDGER_DISCRETISATION",
    "MAX_NOISE_MULTIPLIER",
    "DpStep",
    "GaussianRelease",
    "Mechanism",
    "epsilon_for_history",
    "mechanism_from_json",
    "noise_for_target",
    "plan_sampling",
    "rdp_epsilon_for_history",
    "steps_per_epoch",
]

#: Precision of the noise search: the planned epsilon lands in [target - this, target].
EPSILON_TOLERANCE = 1e-3


def steps_per_epoch(*, sample_rate: float) -> int:
    """Optimizer steps in one epoch of Poisson sampling at ``sample_rate``.

    This is ``int(1 / sample_rate)``, exactly the length of Opacus's ``DPDataLoader``
    (``UniformWithReplacementSampler``), and never less than one.
    """
    check_sample_rate(sample_rate)
    return max(1, int(1 / sample_rate))


def plan_sampling(*, n_train: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """Sample rate and total optimizer steps of local training.

    Returns ``(sample_rate, steps)`` with ``sample_rate = min(1, batch_size / n_train)`` and
    ``steps = epochs * steps_per_epoch(sample_rate)``: the number of optimizer steps that
    local training performs, with or without DP.
    """
    check_count("n_train", n_train)
    check_count("batch_size", batch_size)
    check_count("epochs", epochs)
    sample_rate = min(1.0, batch_size / n_train)
    return sample_rate, epochs * steps_per_epoch(sample_rate=sample_rate)


@functools.lru_cache(maxsize=256)
def noise_for_target(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int,
    extra: tuple[Mechanism, ...] = (),
) -> float:
    """Smallest noise multiplier (to :data:`EPSILON_TOLERANCE`) reaching ``target_epsilon``.

    After ``steps`` Poisson-sampled steps at ``sample_rate`` the ledger's epsilon
    (:func:`epsilon_for_history` of ``[DpStep(noise, sample_rate, steps)]``) at ``delta`` is
    at most ``target_epsilon`` and within :data:`EPSILON_TOLERANCE` of it, composed with the
    ``extra`` releases the study also makes (statistics, evaluation counts). Cached per
    ``(sample_rate, steps, target_epsilon, delta, extra)``. A target that needs a noise multiplier
    above :data:`MAX_NOISE_MULTIPLIER` is refused.
    """
    check_epsilon("target_epsilon", target_epsilon)
    check_delta(delta)
    check_sample_rate(sample_rate)
    check_count("steps", steps)
    return calibrate_noise(
        target_epsilon=float(target_epsilon),
        delta=float(delta),
        sample_rate=float(sample_rate),
        steps=steps,
        tolerance=EPSILON_TOLERANCE,
        extra=tuple(extra),
    )


def epsilon_for_history(history: Sequence[Mechanism], *, delta: float) -> float:
    """Epsilon at ``delta`` of the composition of every release in ``history`` (PLD).

    Pessimistic PLD at :data:`LEDGER_DISCRETISATION`: never below the true epsilon, and
    independent of the order of the entries; ``0.0`` for an empty history.
    """
    check_delta(delta)
    return pld_epsilon(history, delta=float(delta), discretisation=LEDGER_DISCRETISATION)

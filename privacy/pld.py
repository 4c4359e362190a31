"""Privacy-loss-distribution (PLD) accounting: the tight epsilon of a privacy history.

This module owns the translation of :mod:`privacy.mechanisms` into Google's
``dp_accounting`` privacy loss distributions (Meiser & Mohammadi 2018; Koskela et al. 2020;
Doroshenko et al. 2022, "connect the dots"), always with **pessimistic** discretisation, so
that every figure here is an upper bound of the true epsilon:

- a :class:`~privacy.mechanisms.DpStep` is a Poisson-subsampled Gaussian (add-or-remove
  neighbours) self-composed ``steps`` times; at sample rate 1 it is one Gaussian with noise
  multiplier ``sigma / sqrt(steps)`` (exact composition of Gaussians);
- a :class:`~privacy.mechanisms.GaussianRelease` is one Gaussian with noise multiplier
  ``sigma / sqrt(count)``.

The discretisation interval (the grid the privacy loss is rounded up to) trades speed for
tightness: calibration searches on a coarse grid and checks on the ledger's grid.
Distributions and results are cached: they are pure in their arguments.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from dp_accounting.pld import privacy_loss_distribution as pld_lib

from privacy.mechanisms import DpStep, GaussianRelease, Mechanism, compact_history

#: Probability mass dropped from each noise distribution's tails (dp-accounting's default);
#: pessimistic estimates count it as infinite privacy loss.
_LOG_MASS_TRUNCATION = -50.0


def pld_epsilon(history: Sequence[Mechanism], *, delta: float, discretisation: float) -> float:
    """Pessimistic PLD epsilon at ``delta`` of the composition of ``history``.

    ``history`` is compacted first (see :func:`privacy.mechanisms.compact_history`), so the
    result does not depend on the order of entries; ``0.0`` for an empty history.
    """
    groups = compact_history(history)
    if not groups:
        return 0.0
    return _epsilon(groups, delta, discretisation)


def run_epsilon(step: DpStep, *, delta: float, discretisation: float,
                extra: tuple[Mechanism, ...] = ()) -> float:
    """Pessimistic PLD epsilon of one run composed with ``extra`` releases, the run's own
    distribution uncached (for searches over many noise values).

    The same computation as :func:`pld_epsilon` of ``[step, *extra]``, bit for bit.
    """
    if not extra:
        return _epsilon.__wrapped__((step,), delta, discretisation)
    return _epsilon.__wrapped__(compact_history([step, *extra]), delta, discretisation)


@functools.lru_cache(maxsize=512)
def _epsilon(groups: tuple[Mechanism, ...], delta: float, discretisation: float) -> float:
    build = _distribution if len(groups) > 1 else _distribution.__wrapped__
    composed = build(groups[0], discretisation)
    for group in groups[1:]:
        composed = composed.compose(build(group, discretisation))
    eps = composed.get_epsilon_for_delta(delta)
    return float(max(0.0, eps))


@functools.lru_cache(maxsize=64)
def _distribution(
    mechanism: Mechanism, discretisation: float
) -> pld_lib.PrivacyLossDistribution:
    if isinstance(mechanism, GaussianRelease):
        return _gaussian(mechanism.noise_multiplier / math.sqrt(mechanism.count), discretisation)
    if isinstance(mechanism, DpStep):
        if mechanism.sample_rate >= 1.0:
            return _gaussian(
                mechanism.noise_multiplier / math.sqrt(mechanism.steps), discretisation
            )
        one_step = pld_lib.from_gaussian_mechanism(
            standard_deviation=mechanism.noise_multiplier,
            sensitivity=1.0,
            pessimistic_estimate=True,
            value_discretization_interval=discretisation,
            log_mass_truncation_bound=_LOG_MASS_TRUNCATION,
            sampling_prob=mechanism.sample_rate,
        )
        return one_step.self_compose(mechanism.steps)
    raise TypeError(f"not a mechanism: {type(mechanism).__name__}")  # pragma: no cover


def _gaussian(noise_multiplier: float, discretisation: float) -> pld_lib.PrivacyLossDistribution:
    return pld_lib.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        sensitivity=1.0,
        pessimistic_estimate=True,
        value_discretization_interval=discretisation,
        log_mass_truncation_bound=_LOG_MASS_TRUNCATION,
    )

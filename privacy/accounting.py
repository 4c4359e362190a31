"""Differential-privacy accounting for DP-SGD: sampling plans, noise for a target, epsilon spent.

This module owns the arithmetic behind a site's privacy budget. Everything here is a pure
function over plain values, built on Opacus's Renyi-DP (RDP) accountant, so that anyone holding
a site's ledger (noise multiplier, sample rate and step count of every DP-SGD run, per dataset,
across rounds and studies) can recompute the epsilon spent.

Federation use: the noise multiplier is fixed once per study, with :func:`noise_for_target`
over all planned steps (rounds x local epochs, see :func:`plan_sampling`); the ledger then
composes the history of every run on a dataset with :func:`epsilon_for_history`.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import ErrorCode, TesseraError


def _import_opacus_quietly() -> None:
    """Import Opacus without keeping the root log handler its import installs.

    ``opacus.utils.module_utils`` calls ``logging.basicConfig`` at import time, which doubles
    every log line of an application that configures its own handlers later.
    """
    root = logging.getLogger()
    before = list(root.handlers)
    import opacus  # noqa: F401

    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)


_import_opacus_quietly()

from opacus.accountants import RDPAccountant  # noqa: E402
from opacus.accountants.analysis import rdp as rdp_analysis  # noqa: E402
from opacus.accountants.utils import get_noise_multiplier  # noqa: E402

#: Opacus warns when the best RDP order is the largest one it tries; the bound it then
#: returns is valid but conservative (an over-estimate of epsilon), which is safe for a budget.
#: The smallest-order case means a very large epsilon, equally conservative.
_EDGE_ORDER_WARNING = r"Optimal order is the (largest|smallest) alpha.*"

#: Precision of the noise search: the planned epsilon lands in [target - this, target].
EPSILON_TOLERANCE = 1e-3


@dataclass(frozen=True)
class DpStep:
    """One stretch of DP-SGD steps at a fixed noise multiplier and Poisson sample rate."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not _is_number(self.noise_multiplier) or not (
            math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0
        ):
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"noise_multiplier: must be a finite number > 0, got {self.noise_multiplier!r}",
            )
        _check_sample_rate(self.sample_rate)
        _check_count("steps", self.steps)


def steps_per_epoch(*, sample_rate: float) -> int:
    """Optimizer steps in one epoch of Poisson sampling at ``sample_rate``.

    This is ``int(1 / sample_rate)``, exactly the length of Opacus's ``DPDataLoader``
    (``UniformWithReplacementSampler``), and never less than one.
    """
    _check_sample_rate(sample_rate)
    return max(1, int(1 / sample_rate))


def plan_sampling(*, n_train: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """Sample rate and total optimizer steps of local training.

    Returns ``(sample_rate, steps)`` with ``sample_rate = min(1, batch_size / n_train)`` and
    ``steps = epochs * steps_per_epoch(sample_rate)``: the number of optimizer steps that
    local training performs, with or without DP.
    """
    _check_count("n_train", n_train)
    _check_count("batch_size", batch_size)
    _check_count("epochs", epochs)
    sample_rate = min(1.0, batch_size / n_train)
    return sample_rate, epochs * steps_per_epoch(sample_rate=sample_rate)


@functools.lru_cache(maxsize=256)
def noise_for_target(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int
) -> float:
    """Smallest noise multiplier (to :data:`EPSILON_TOLERANCE`) reaching ``target_epsilon``.

    After ``steps`` Poisson-sampled steps at ``sample_rate`` the RDP epsilon at ``delta`` is
    at most ``target_epsilon`` and within :data:`EPSILON_TOLERANCE` of it.
    """
    if not _is_number(target_epsilon) or not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"target_epsilon: must be a finite number > 0, got {target_epsilon!r}",
        )
    _check_delta(delta)
    _check_sample_rate(sample_rate)
    _check_count("steps", steps)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_EDGE_ORDER_WARNING, category=UserWarning)
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant="rdp",
                epsilon_tolerance=EPSILON_TOLERANCE,
            )
    except ValueError as exc:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"target_epsilon: {target_epsilon} is unreachable at delta {delta} over {steps} "
            f"steps at sample rate {sample_rate} ({exc})",
        ) from None
    return float(sigma)


def epsilon_for_history(history: Sequence[DpStep], *, delta: float) -> float:
    """Epsilon at ``delta`` of the composition of every run in ``history`` (RDP).

    Equals what one continuous Opacus ``RDPAccountant`` reports after taking the same steps
    in the same order; ``0.0`` for an empty history.
    """
    _check_delta(delta)
    merged: list[tuple[float, float, int]] = []
    for index, item in enumerate(history):
        if not isinstance(item, DpStep):
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"history[{index}]: expected a DpStep, got {type(item).__name__}",
            )
        # Merge runs of identical steps exactly as RDPAccountant.step does, so that the
        # floating-point sum (and therefore epsilon) is bit-for-bit the accountant's.
        if merged and merged[-1][0] == item.noise_multiplier and merged[-1][1] == item.sample_rate:
            sigma, rate, steps = merged[-1]
            merged[-1] = (sigma, rate, steps + item.steps)
        else:
            merged.append((item.noise_multiplier, item.sample_rate, item.steps))
    if not merged:
        return 0.0
    # RDP is linear in the number of steps: cache the per-step RDP curve of each
    # (noise, rate) pair, then sum exactly as RDPAccountant.get_privacy_spent does.
    rdp = sum(_rdp_per_step(sigma, rate) * steps for sigma, rate, steps in merged)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EDGE_ORDER_WARNING, category=UserWarning)
        eps, _ = rdp_analysis.get_privacy_spent(orders=_ORDERS, rdp=rdp, delta=delta)
    return float(eps)


_ORDERS = RDPAccountant.DEFAULT_ALPHAS


@functools.lru_cache(maxsize=1024)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """RDP of one step at every order (the expensive part; pure in its arguments)."""
    curve = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=_ORDERS
    )
    curve.setflags(write=False)
    return curve


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"{name}: must be an integer >= 1, got {value!r}"
        )


def _check_sample_rate(value: object) -> None:
    if not _is_number(value) or not (0 < value <= 1):  # type: ignore[operator]
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"sample_rate: must be in (0, 1], got {value!r}"
        )


def _check_delta(value: object) -> None:
    if not _is_number(value) or not (0 < value < 1):  # type: ignore[operator]
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"delta: must be in (0, 1), got {value!r}")

"""Renyi-DP accounting: the cross-check accountant and the fast bracket for noise calibration.

This module owns two RDP computations over :mod:`privacy.mechanisms`:

- :func:`rdp_epsilon_for_history`, Opacus's RDP accountant (fractional and integer orders,
  the conversion of Balle et al. 2020): an independent, looser upper bound that anyone can
  check a PLD ledger figure against. For a history of DP-SGD runs it equals what one
  continuous Opacus ``RDPAccountant`` reports after the same steps in the same order.
- :func:`rdp_noise_upper_bound`, a vectorised integer-order RDP (Mironov, Talwar and Zhang
  2019, the binomial expansion) searched by bisection in milliseconds. Every RDP bound is an
  upper bound of the true epsilon, so the noise it finds is at least what the tight (PLD)
  accountant needs: the upper end of the calibration bracket.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln

from common.errors import ErrorCode, TesseraError
from privacy.mechanisms import DpStep, GaussianRelease, Mechanism, check_delta


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

#: Opacus warns when the best RDP order is the largest one it tries; the bound it then
#: returns is valid but conservative (an over-estimate of epsilon), which is safe for a budget.
#: The smallest-order case means a very large epsilon, equally conservative.
_EDGE_ORDER_WARNING = r"Optimal order is the (largest|smallest) alpha.*"

_ORDERS = RDPAccountant.DEFAULT_ALPHAS

#: Integer orders of the fast bracket; wider than Opacus's so that small targets fit too.
_INTEGER_ORDERS = np.arange(2, 257, dtype=np.float64)


def rdp_epsilon_for_history(history: Sequence[Mechanism], *, delta: float) -> float:
    """Epsilon at ``delta`` of the composition of ``history`` under Opacus's RDP accountant.

    A :class:`GaussianRelease` counts as ``count`` steps at sample rate 1. Equals one
    continuous Opacus ``RDPAccountant`` over the same DP-SGD steps in the same order;
    ``0.0`` for an empty history.
    """
    check_delta(delta)
    merged: list[tuple[float, float, int]] = []
    for index, item in enumerate(history):
        if isinstance(item, DpStep):
            entry = (item.noise_multiplier, item.sample_rate, item.steps)
        elif isinstance(item, GaussianRelease):
            entry = (item.noise_multiplier, 1.0, item.count)
        else:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"history[{index}]: expected a DpStep or GaussianRelease, "
                f"got {type(item).__name__}",
            )
        # Merge runs of identical steps exactly as RDPAccountant.step does, so that the
        # floating-point sum (and therefore epsilon) is bit-for-bit the accountant's.
        if merged and merged[-1][0] == entry[0] and merged[-1][1] == entry[1]:
            sigma, rate, steps = merged[-1]
            merged[-1] = (sigma, rate, steps + entry[2])
        else:
            merged.append(entry)
    if not merged:
        return 0.0
    # RDP is linear in the number of steps: cache the per-step RDP curve of each
    # (noise, rate) pair, then sum exactly as RDPAccountant.get_privacy_spent does.
    rdp = sum(_rdp_per_step(sigma, rate) * steps for sigma, rate, steps in merged)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EDGE_ORDER_WARNING, category=UserWarning)
        eps, _ = rdp_analysis.get_privacy_spent(orders=_ORDERS, rdp=rdp, delta=delta)
    return float(eps)


@functools.lru_cache(maxsize=1024)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """RDP of one step at every order (the expensive part; pure in its arguments)."""
    curve = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=_ORDERS
    )
    curve.setflags(write=False)
    return curve


def integer_order_epsilon(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> float:
    """Upper bound of the epsilon of ``steps`` Poisson-subsampled Gaussian steps (RDP).

    Integer orders 2..256 only, in closed form, so it is never below Opacus's figure.
    """
    alphas = _INTEGER_ORDERS
    if sample_rate >= 1.0:
        rdp = alphas / (2 * noise_multiplier**2)
    else:
        # log A_alpha = logsumexp_k [log C(alpha, k) + (alpha - k) log(1 - q) + k log q
        #                           + (k^2 - k) / (2 sigma^2)],  k = 0..alpha.
        k = np.arange(alphas[-1] + 1)
        a = alphas[:, None]
        valid = k[None, :] <= a
        log_binom = gammaln(a + 1) - gammaln(k + 1) - gammaln(np.maximum(a - k, 0) + 1)
        terms = (
            log_binom
            + (a - k) * math.log1p(-sample_rate)
            + k * math.log(sample_rate)
            + (k * k - k) / (2 * noise_multiplier**2)
        )
        terms = np.where(valid, terms, -np.inf)
        top = terms.max(axis=1, keepdims=True)
        log_a = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1))
        rdp = log_a / (alphas - 1)
    total = steps * rdp
    eps = total - (math.log(delta) + np.log(alphas)) / (alphas - 1) + np.log((alphas - 1) / alphas)
    return float(max(0.0, eps.min()))


def rdp_noise_upper_bound(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, ceiling: float
) -> float | None:
    """A noise multiplier whose integer-order RDP epsilon is at most ``target_epsilon``.

    Within 0.1% of the smallest such multiplier; ``None`` when even ``ceiling`` does not
    reach the target under RDP (the PLD accountant may still reach it).
    """

    def eps(sigma: float) -> float:
        return integer_order_epsilon(
            noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta
        )

    if eps(ceiling) > target_epsilon:
        return None
    hi = min(1.0, ceiling)
    if eps(hi) <= target_epsilon:
        while hi > 1e-3 and eps(hi / 2) <= target_epsilon:
            hi /= 2
        lo = hi / 2
    else:
        lo = hi
        while eps(hi) > target_epsilon:
            lo, hi = hi, min(2 * hi, ceiling)
    while hi - lo > 1e-3 * hi:
        mid = math.sqrt(lo * hi)
        if eps(mid) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi

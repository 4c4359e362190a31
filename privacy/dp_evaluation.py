"""Evaluation releases under differential privacy: score histograms and feature importance.

**Histograms.** A site's evaluation counts go out as one score histogram (positives and
negatives per bin) per group of the plan's sensitive column. The groups partition the rows
(undeclared values count in ``(other)``), so adding or removing one row changes exactly one
cell by one: the L2 sensitivity is 1. The site adds Gaussian noise of standard deviation
``noise_multiplier`` to every cell, drawn from the CSPRNG of :mod:`privacy.secure_noise`, and
rounds the result to whole numbers. That is a Gaussian mechanism with that noise multiplier
(:class:`~privacy.mechanisms.GaussianRelease`), recorded in the site's ledger; everything
else a site or the coordinator derives from the noisy cells (the all-rows histogram, the row
count, log loss and Brier score at the bin midpoints, every metric) is post-processing and
costs nothing more.

**Suppression.** A noisy histogram (one site's, or a sum of several) is cleaned before any
metric is computed: cells below :data:`SUPPRESS_SIGMAS` times the standard deviation of the
noise they carry are set to zero (this also suppresses small cells), then negative cells are
zero. Without it, the noise in the many empty cells would add mass everywhere and pull the
AUC towards 0.5; with a higher floor the few rows a good model misranks vanish with the
noise and the AUC is overstated. At 1.5 standard deviations the AUC of the bundled breast
cancer study (114 held-out rows, three sites, noise 3, 10 bins) comes out unbiased with a
root-mean-square error of about 0.045 (scripts/bench_dp_evaluation.py).

**Importance.** Each held-out row contributes, per feature, the rise in its log loss when that
feature is replaced by the federation mean (0 after standardisation), the whole vector
clipped to L2 norm ``clip``, plus one more coordinate equal to ``clip`` (to count rows). The
L2 sensitivity of the summed vector is ``clip * sqrt(2)``; the site adds Gaussian noise of
standard deviation ``noise_multiplier * clip * sqrt(2)`` to every coordinate and releases the
noisy sums and the noisy count; the coordinator divides them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.errors import ErrorCode, TesseraError
from privacy.mechanisms import GaussianRelease, check_noise_multiplier
from privacy.secure_noise import SecureGaussian, new_key

#: Cells of a noisy histogram below this many noise standard deviations are set to zero.
SUPPRESS_SIGMAS = 1.5


def _gaussian(key: bytes | None) -> SecureGaussian:
    return SecureGaussian(key or new_key())


def noisy_cells(cells: np.ndarray, *, noise_multiplier: float,
                key: bytes | None = None) -> np.ndarray:
    """Histogram cells plus Gaussian noise (std ``noise_multiplier``), rounded to integers."""
    check_noise_multiplier(noise_multiplier)
    values = np.asarray(cells, dtype=np.float64)
    noise = _gaussian(key).noise(values.size, std=noise_multiplier).reshape(values.shape)
    return np.rint(values + noise).astype(np.int64)


def suppression_floor(*, noise_multiplier: float, contributors: int) -> float:
    """The smallest cell kept in a sum of ``contributors`` sites' noisy histograms."""
    check_noise_multiplier(noise_multiplier)
    if isinstance(contributors, bool) or not isinstance(contributors, int) or contributors < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"contributors: must be an integer >= 1, got {contributors!r}")
    return SUPPRESS_SIGMAS * noise_multiplier * math.sqrt(contributors)


def suppress(cells: np.ndarray, *, floor: float) -> np.ndarray:
    """Noisy cells with those below ``floor`` (and every negative one) set to zero."""
    values = np.asarray(cells, dtype=np.int64)
    return np.where(values < max(floor, 0.0), 0, values).astype(np.int64)


@dataclass(frozen=True)
class NoisyImportance:
    """A site's importance release: noisy per-feature sums of loss rises and a noisy count."""

    sums: np.ndarray
    count: float


def importance_sensitivity(clip: float) -> float:
    """L2 sensitivity of the importance release for a per-row clip of ``clip``."""
    if not math.isfinite(clip) or clip <= 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"clip: must be > 0, got {clip!r}")
    return clip * math.sqrt(2.0)


def clip_rows(rises: np.ndarray, *, clip: float) -> np.ndarray:
    """Each row's vector of loss rises, scaled down to L2 norm ``clip`` if longer."""
    importance_sensitivity(clip)
    rows = np.asarray(rises, dtype=np.float64)
    if rows.ndim != 2 or not np.isfinite(rows).all():
        raise TesseraError(ErrorCode.DATA_INVALID, "importance: expected finite (rows, features)")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows * np.minimum(1.0, clip / np.maximum(norms, 1e-300))


def noisy_importance(rises: np.ndarray, *, clip: float, noise_multiplier: float,
                     key: bytes | None = None) -> NoisyImportance:
    """The Gaussian release of clipped per-row loss rises (rows, features) and their count."""
    check_noise_multiplier(noise_multiplier)
    rows = clip_rows(rises, clip=clip)
    std = noise_multiplier * importance_sensitivity(clip)
    noise = _gaussian(key).noise(rows.shape[1] + 1, std=std)
    sums = rows.sum(axis=0) + noise[:-1]
    count = (clip * rows.shape[0] + noise[-1]) / clip
    return NoisyImportance(sums=sums, count=float(count))


def histogram_mechanism(noise_multiplier: float) -> GaussianRelease:
    """The mechanism one histogram release is, for the ledger."""
    return GaussianRelease(noise_multiplier=noise_multiplier, count=1)


def importance_mechanism(noise_multiplier: float) -> GaussianRelease:
    """The mechanism one importance release is (noise relative to its sensitivity)."""
    return GaussianRelease(noise_multiplier=noise_multiplier, count=1)

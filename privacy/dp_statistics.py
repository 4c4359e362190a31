"""Federation statistics under differential privacy: a site's contribution to the shared
standardisation is a Gaussian mechanism over clipped, normalised rows.

Each feature ``f`` is normalised with the plan's declared range, ``u = (x - c) / h`` with
``c = (min + max) / 2`` and ``h = (max - min) / 2``, and clipped to [-1, 1]. A row contributes
its vector ``u`` (length ``F``), clipped to L2 norm ``clip`` (at most ``sqrt(F)``, where no row
is clipped); the site releases the sum of its rows' vectors plus Gaussian noise of standard
deviation ``noise_multiplier * clip`` per coordinate, from a CSPRNG. Adding or removing one row
changes the sum by at most ``clip`` in L2 norm, so the release is a Gaussian mechanism with that
noise multiplier (``privacy.mechanisms.GaussianRelease``), recorded in the site's ledger.

Only means are released: second moments over 30 features and a few hundred rows cost far
more budget than the standardisation is worth (the noise swamps small variances). Each
feature's scale comes from its declared range instead (:data:`SCALE_OF_HALF_WIDTH` of the
half-width: a quarter, close to the standard deviation of data that fills about eight tenths
of the range), so a plan's honest, tight ranges give well-conditioned features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import ErrorCode, TesseraError
from privacy.secure_noise import SecureGaussian, new_key


@dataclass(frozen=True)
class FeatureRanges:
    """Each feature's declared range, as centre and half-width."""

    centre: np.ndarray
    half_width: np.ndarray

    @classmethod
    def of(cls, lows: Sequence[float], highs: Sequence[float]) -> FeatureRanges:
        lo, hi = np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)
        if lo.shape != hi.shape or not np.all(np.isfinite(lo)) or not np.all(hi > lo):
            raise TesseraError(ErrorCode.PLAN_INVALID,
                               "every feature needs a finite declared range with max > min")
        return cls(centre=(lo + hi) / 2, half_width=(hi - lo) / 2)


#: A feature's scale, as a fraction of its declared half-width.
SCALE_OF_HALF_WIDTH = 0.25


def row_vectors(X: np.ndarray, ranges: FeatureRanges, *, clip: float) -> np.ndarray:
    """Each row's ``u``, normalised, clipped to [-1, 1] and to L2 norm ``clip``."""
    if not math.isfinite(clip) or clip <= 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"clip: must be > 0, got {clip!r}")
    rows = np.clip((np.asarray(X, dtype=np.float64) - ranges.centre) / ranges.half_width, -1, 1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows * np.minimum(1.0, clip / np.maximum(norms, 1e-300))


def noisy_statistics(X: np.ndarray, ranges: FeatureRanges, *, clip: float,
                     noise_multiplier: float, key: bytes | None = None) -> np.ndarray:
    """The site's release: the sum of its rows' vectors plus Gaussian noise (CSPRNG)."""
    if not math.isfinite(noise_multiplier) or noise_multiplier <= 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"noise_multiplier: must be > 0, got {noise_multiplier!r}")
    total = row_vectors(X, ranges, clip=clip).sum(axis=0)
    noise = SecureGaussian(key or new_key()).noise(total.size, std=noise_multiplier * clip)
    return total + noise


def standardisation(sums: np.ndarray, rows: float,
                    ranges: FeatureRanges) -> tuple[np.ndarray, np.ndarray]:
    """Federation-wide means from summed releases, and each feature's declared scale."""
    if rows <= 0:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "federation statistics cover no rows")
    if sums.shape != ranges.centre.shape:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "statistics do not match the features")
    mean_u = np.clip(sums / rows, -1, 1)
    return ranges.centre + ranges.half_width * mean_u, ranges.half_width * SCALE_OF_HALF_WIDTH

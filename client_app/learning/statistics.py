"""A site's round-0 statistics for a study, and the standardisation every site derives from
their sum.

With DP on, the release is the Gaussian mechanism of :mod:`privacy.dp_statistics` over rows
normalised with the plan's declared feature ranges (every feature needs ``min`` and ``max`` in
the data dictionary), with the plan's ``[statistics]`` noise multiplier and clip
(:func:`privacy.release_plan.statistics_mechanism` is what the ledger records). A plan
without DP (a comparison mode the site must allow) releases the exact normalised sums, or
the raw sums and sums of squares when the plan declares no ranges.
"""

from __future__ import annotations

import math

import numpy as np

from client_app.learning.site_data import feature_sums, standardiser
from common.datasets import TableData
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, declared_feature_ranges
from privacy.dp_statistics import (
    FeatureRanges,
    noisy_statistics,
    row_vectors,
    standardisation,
)


def declared_ranges(plan: StudyPlan) -> FeatureRanges | None:
    """The features' declared ranges, or None when any feature lacks ``min`` or ``max``."""
    declared = declared_feature_ranges(plan)
    return None if declared is None else FeatureRanges.of(*declared)


def statistics_clip(plan: StudyPlan) -> float:
    """The L2 bound of one row's contribution: the plan's, or ``sqrt(F)`` (no row clipped)."""
    declared = plan.statistics_policy.clip
    return declared if declared is not None else math.sqrt(len(plan.dataset.features))


def _ranges(plan: StudyPlan) -> FeatureRanges | None:
    ranges = declared_ranges(plan)
    if ranges is None and plan.privacy.dp:
        raise TesseraError(ErrorCode.PLAN_INVALID,
                           "study plan: differentially private statistics need a declared "
                           "min and max for every feature (dataset.columns.<name>)")
    return ranges


def statistics_release(plan: StudyPlan, train: TableData) -> np.ndarray:
    """What this site contributes to the federation statistics."""
    ranges = _ranges(plan)
    if ranges is None:
        return feature_sums(train)
    clip = statistics_clip(plan)
    if not plan.privacy.dp:
        return row_vectors(train.X, ranges, clip=clip).sum(axis=0)
    return noisy_statistics(train.X, ranges, clip=clip,
                            noise_multiplier=plan.statistics_policy.noise_multiplier)


def standardisation_of(plan: StudyPlan, sums: np.ndarray,
                       rows: float) -> tuple[np.ndarray, np.ndarray]:
    """Federation-wide mean and standard deviation from the summed statistics."""
    ranges = _ranges(plan)
    if ranges is None:
        return standardiser(sums, rows)
    return standardisation(np.asarray(sums, dtype=np.float64), rows, ranges)

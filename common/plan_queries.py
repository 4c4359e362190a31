"""The plan sections that declare what a study releases and measures besides training: KPI
release gates, the federated evaluation queries, the release's rounding, the federation
statistics mechanism and drift monitoring. :class:`common.plan_schema.StudyPlan` holds them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from common.plan_base import Spec as _Spec


class KpiSpec(_Spec):
    """``[kpis]``: release gates on the final federated metrics (absent: no gate).

    ``min_*`` gates need the metric at or above the bound, ``max_*`` gates at or below it;
    :mod:`server.kpi` evaluates them.
    """

    min_auc: float | None = Field(default=None, ge=0.0, le=1.0)
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    max_ece: float | None = Field(default=None, ge=0.0, le=1.0)
    max_brier: float | None = Field(default=None, ge=0.0, le=1.0)
    max_equalized_odds_difference: float | None = Field(default=None, ge=0.0, le=1.0)
    max_demographic_parity_difference: float | None = Field(default=None, ge=0.0, le=1.0)

    def gates(self) -> dict[str, float]:
        """The gates that are set, by field name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class EvaluationSpec(_Spec):
    """``[evaluation]``: the evaluation queries the coordinator may make of a site per run.

    Each is answered at most once per run (per round for ``every_round``); a site refuses any
    query the plan does not declare. Absent: every round, importance, no leave-one-site-out.
    With DP every answer is a Gaussian mechanism in the site's ledger, with the noise declared
    here (privacy/dp_evaluation.py).
    """

    every_round: bool = True
    importance: bool = True
    loso: bool = False
    #: With DP: the Gaussian noise of the released score histograms, relative to their L2
    #: sensitivity of 1 (one row sits in one cell of one group's histogram).
    noise_multiplier: float = Field(default=3.0, gt=0.0)
    #: Score bins of the shared histograms; absent: 10 with DP, 1000 without.
    bins: int | None = Field(default=None, ge=2, le=1000)
    #: With DP: the Gaussian noise of the released feature importance, relative to its L2
    #: sensitivity ``importance_clip`` (one row's vector of loss increases, clipped).
    importance_noise_multiplier: float = Field(default=3.0, gt=0.0)
    importance_clip: float = Field(default=1.0, gt=0.0)


class ReleaseSpec(_Spec):
    """``[release]``: the precision of decrypted real values a site releases (after noise
    flooding, see privacy/flooding.py). Absent: 6 decimal places."""

    decimals: int = Field(default=6, ge=0, le=12)


class StatisticsSpec(_Spec):
    """``[statistics]``: the differentially private federation statistics (round 0) that set
    the shared standardisation (privacy/dp_statistics.py). Absent: the defaults below (``clip``
    absent: ``sqrt(F)`` for ``F`` features, where no row is clipped); every feature then needs
    a declared ``min`` and ``max`` in the data dictionary."""

    noise_multiplier: float = Field(default=4.0, gt=0.0)
    clip: float | None = Field(default=None, gt=0.0)
    #: With DP: the Gaussian noise of a site's released row counts (training and held-out
    #: rows; one row is in one of them: L2 sensitivity 1), drawn once per dataset version.
    count_noise_multiplier: float = Field(default=8.0, gt=0.0)


class DriftSpec(_Spec):
    """``[drift]``: the drift release a coordinator may ask a site for, and when the model
    needs retraining (privacy/dp_drift.py). Absent: a site refuses every drift request.

    A site that allows it releases, per watched feature (``features``, default all), a
    histogram of its newest dataset version over ``bins`` equal bins of the feature's declared
    range, with Gaussian noise of standard
    deviation ``noise_multiplier`` on every cell (one row is in one bin of each feature's
    histogram). The coordinator's PSI of a feature above ``psi_threshold`` marks the model
    "retraining recommended".

    With ``scores = true`` a site that kept the study's final model also releases, in the same
    Gaussian release, a histogram of that model's scores on the same rows (``bins`` equal bins
    over [0, 1]); their PSI above ``score_psi_threshold`` also marks the model. Both keys are
    left out of the plan (and its hash) while ``scores`` is false, so plans written before
    them keep their hash.
    """

    psi_threshold: float = Field(default=0.25, gt=0.0)
    noise_multiplier: float = Field(default=8.0, gt=0.0)
    bins: int = Field(default=10, ge=2, le=50)
    #: The features to watch (each costs budget: one histogram each); absent: all.
    features: list[str] | None = None
    #: Also release the final model's score histogram (one more histogram of budget).
    scores: bool = False
    score_psi_threshold: float = Field(default=0.25, gt=0.0)

    @model_serializer(mode="wrap")
    def _without_score_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not self.scores:
            data.pop("scores", None)
            data.pop("score_psi_threshold", None)
        return data

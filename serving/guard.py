"""The release guard: watches a candidate beside the stable version and calls for a rollback.

For each study under release, the service feeds every answered request here: the version it
went to, whether it failed (a server-side error scoring it; a caller's bad input is not the
model's fault and is not counted) and the scores it returned. The guard keeps, per version
and since the release's current generation, the request and error counts and a histogram of
scores in ten bins over [0, 1] (:func:`common.drift.score_counts`).

Once the candidate has answered ``min_requests`` requests, :meth:`ReleaseGuard.verdict`
asks for a rollback when

* its error rate (failed / answered) exceeds ``max_error_rate``, or
* the population stability index of its scores against the stable version's scores over the
  same period exceeds ``max_score_psi`` (and the stable side has scored at least
  ``min_requests`` rows too). Requests are split between the two versions at random (or by
  request key), so both see the same population and a large PSI means the candidate scores
  that population differently.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from common.drift import DEFAULT_BINS, psi, score_counts
from serving.releases import Release


@dataclass
class _Window:
    requests: int = 0
    errors: int = 0
    scores: np.ndarray = field(default_factory=lambda: np.zeros(DEFAULT_BINS))


@dataclass(frozen=True)
class Verdict:
    """Why a candidate must go, with what was measured."""

    reason: str
    measured: dict[str, float]


class ReleaseGuard:
    """Thread-safe per-version counters for the studies under release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, int, int], _Window] = {}

    def observe(self, release: Release, version: int, *, error: bool,
                scores: np.ndarray | None = None) -> None:
        """Count one answered request of ``version`` under ``release``'s generation."""
        key = (release.study, release.generation, version)
        with self._lock:
            window = self._windows.setdefault(key, _Window())
            window.requests += 1
            window.errors += int(error)
            if scores is not None and len(scores):
                window.scores = window.scores + score_counts(scores)

    def forget(self, study: str) -> None:
        """Drop the study's counters (its release state changed)."""
        with self._lock:
            for key in [k for k in self._windows if k[0] == study]:
                del self._windows[key]

    def verdict(self, release: Release) -> Verdict | None:
        """A rollback verdict for ``release``'s candidate, or None while it looks healthy."""
        if release.candidate is None:
            return None
        limits = release.thresholds
        with self._lock:
            cand = self._windows.get((release.study, release.generation, release.candidate))
            stable = self._windows.get((release.study, release.generation, release.stable))
            if cand is None or cand.requests < limits.min_requests:
                return None
            error_rate = cand.errors / cand.requests
            if error_rate > limits.max_error_rate:
                return Verdict(f"error rate {error_rate:.3f} > {limits.max_error_rate}",
                               {"error_rate": error_rate, "requests": float(cand.requests)})
            if stable is None or cand.scores.sum() < limits.min_requests \
                    or stable.scores.sum() < limits.min_requests:
                return None
            shift = psi(stable.scores, cand.scores)
        if shift > limits.max_score_psi:
            return Verdict(f"score PSI {shift:.3f} > {limits.max_score_psi}",
                           {"score_psi": shift, "requests": float(cand.requests)})
        return None

"""The service's Prometheus metrics, in a registry of its own (served at ``/metrics``).

* ``tessera_predict_requests_total{study,version,outcome}``: answered prediction requests;
  ``outcome`` is ``ok``, ``invalid`` (422) or ``error`` (the model failed);
* ``tessera_predict_latency_seconds{study,version}``: time to score a request (histogram);
* ``tessera_predict_rows_total{study,version}``: rows scored;
* ``tessera_prediction_score{study,version}``: the distribution of returned scores;
* ``tessera_errors_total{kind}``: refused or failed requests by kind (``unauthorized``,
  ``forbidden``, ``not_found``, ``invalid``, ``internal``);
* ``tessera_release_candidate_percent{study}``: the candidate's share of traffic;
* ``tessera_release_rollbacks_total{study}``: automatic rollbacks.

Labels carry study names and versions only, never request content.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class ServiceMetrics:
    """The counters and histograms of one service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tessera_predict_requests", "Answered prediction requests.",
                                ["study", "version", "outcome"], registry=self.registry)
        self.latency = Histogram("tessera_predict_latency_seconds",
                                 "Seconds spent scoring one request.", ["study", "version"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rows = Counter("tessera_predict_rows", "Rows scored.", ["study", "version"],
                            registry=self.registry)
        self.scores = Histogram("tessera_prediction_score", "Returned scores.",
                                ["study", "version"], buckets=SCORE_BUCKETS,
                                registry=self.registry)
        self.errors = Counter("tessera_errors", "Refused or failed requests.", ["kind"],
                              registry=self.registry)
        self.candidate_percent = Gauge("tessera_release_candidate_percent",
                                       "Share of traffic sent to the release candidate.",
                                       ["study"], registry=self.registry)
        self.rollbacks = Counter("tessera_release_rollbacks", "Automatic rollbacks.",
                                 ["study"], registry=self.registry)

    def scored(self, study: str, version: int, seconds: float, scores: np.ndarray) -> None:
        labels = (study, str(version))
        self.requests.labels(*labels, "ok").inc()
        self.latency.labels(*labels).observe(seconds)
        self.rows.labels(*labels).inc(len(scores))
        histogram = self.scores.labels(*labels)
        for score in scores:
            histogram.observe(float(score))

    def text(self) -> bytes:
        return generate_latest(self.registry)

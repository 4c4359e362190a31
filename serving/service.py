"""The prediction service's logic, apart from HTTP: authorise, route, score, guard, count.

:class:`PredictionService` answers for a :class:`serving.catalog.Catalog` (or a site's
:class:`serving.site_catalog.SiteCatalog`): it checks the caller's role, from an API token
or, when the service requires client certificates, from the verified certificate
(:mod:`serving.mtls`), against the access policy (``api models``, ``api predict``,
``api metrics``), routes a
request to the stable version or the release candidate, scores it with ONNX Runtime,
feeds the release guard and rolls a failing candidate back (actor
``prediction-service``). It logs counts and versions, never request content.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from common.errors import TesseraError
from common.roles import Policy, Role
from server.predict import THRESHOLD, TOP_FEATURES
from serving.catalog import Catalog
from serving.guard import ReleaseGuard
from serving.metrics import ServiceMetrics
from serving.mtls import ClientIdentity
from serving.releases import Release
from serving.site_catalog import SiteCatalog
from serving.tokens import TokenStore
from serving.validation import DEFAULT_MAX_BATCH, InvalidRequestError, rows_matrix

log = logging.getLogger("tessera.serving")
AUTO_ACTOR = "prediction-service"


class RefusedError(Exception):
    """A request the service refuses: HTTP ``status`` and a message without request content."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PredictionService:
    """One service: the catalog it serves, its tokens, policy, guard and metrics."""

    def __init__(self, catalog: Catalog | SiteCatalog, tokens: TokenStore, policy: Policy, *,
                 max_batch: int = DEFAULT_MAX_BATCH, client_certs: bool = False) -> None:
        self.catalog = catalog
        #: Whether callers are known by their verified client certificate (mutual TLS).
        self.client_certs = client_certs
        self.tokens = tokens
        self.policy = policy
        self.max_batch = max_batch
        self.guard = ReleaseGuard()
        self.metrics = ServiceMetrics()
        for study in catalog.studies:
            self._show_release(catalog.release(study))

    def close(self) -> None:
        self.catalog.close()
        self.tokens.close()

    def authorize(self, bearer: str | None, command: str, *,
                  peer: ClientIdentity | None = None) -> Role:
        """The caller's role if it may run ``command`` (``api ...``); 401 or 403 if not.

        With client certificates the verified certificate's role decides (no token needed);
        otherwise the bearer token's."""
        if self.client_certs:
            if peer is None:
                self.metrics.errors.labels("unauthorized").inc()
                raise RefusedError(401, "a verified client certificate is required")
            role, who = peer.role, f"certificate '{peer.common_name}'"
            if role is None:
                self.metrics.errors.labels("forbidden").inc()
                raise RefusedError(403, f"{who} names no single role in its OU "
                                   f"({', '.join(r.value for r in Role)})")
        else:
            token = self.tokens.verify(bearer) if bearer else None
            if token is None:
                self.metrics.errors.labels("unauthorized").inc()
                raise RefusedError(401,
                                   "a valid API token is required (Authorization: Bearer ...)")
            role, who = token.role, f"token {token.token_id}"
        if not self.policy.allowed(command, role):
            self.metrics.errors.labels("forbidden").inc()
            raise RefusedError(403, f"{who} ({role.value}) may not call '{command}'")
        return role

    def ready(self) -> bool:
        return all(self.catalog.release(s).stable is not None for s in self.catalog.studies)

    def models(self) -> list[dict[str, object]]:
        out = []
        for model in self.catalog.served():
            release = self.catalog.release(model.study)
            role = "stable" if model.version == release.stable else "candidate"
            out.append({**model.to_json(), "role": role, "mode": release.mode,
                        "percent": release.percent if role == "candidate" else None})
        return out

    def _show_release(self, release: Release) -> None:
        self.metrics.candidate_percent.labels(release.study).set(
            release.percent if release.candidate is not None else 0.0)

    def _route(self, study: str, key: str | None, pinned: int | None) -> tuple[Release, int]:
        try:
            release = self.catalog.release(study)
        except TesseraError as err:
            self.metrics.errors.labels("not_found").inc()
            raise RefusedError(404, err.message) from None
        self._show_release(release)
        if pinned is None:
            return release, release.route(key)
        if pinned not in release.versions():
            self.metrics.errors.labels("not_found").inc()
            raise RefusedError(404, f"{study} v{pinned} is not served (served: "
                          f"{', '.join(map(str, release.versions()))})")
        return release, pinned

    def predict(self, study: str, rows: object, *, key: str | None = None,
                pinned: int | None = None, explain: bool = False) -> dict[str, Any]:
        """Score ``rows`` (InvalidRequestError for bad input, RefusedError for anything else)."""
        release, version = self._route(study, key, pinned)
        model = self.catalog.model(study, version)
        try:
            X = rows_matrix(rows, model.features, max_batch=self.max_batch)
        except InvalidRequestError:
            self.metrics.requests.labels(study, str(version), "invalid").inc()
            self.metrics.errors.labels("invalid").inc()
            raise
        started = time.perf_counter()
        try:
            scores = model.scores(X)
            explanation = model.explain(X) if explain else None
        except Exception as exc:
            self.metrics.requests.labels(study, str(version), "error").inc()
            self.metrics.errors.labels("internal").inc()
            log.warning("%s v%d failed to score %d rows (%s)", study, version, len(X),
                        type(exc).__name__)
            self._watch(release, version, error=True)
            raise RefusedError(500, f"{study} v{version} failed to score the request") from None
        self.metrics.scored(study, version, time.perf_counter() - started, scores)
        self._watch(release, version, error=False, scores=scores)
        result: dict[str, Any] = {
            "study": study, "version": version, "model_sha256": model.sha256,
            "precision": model.precision, "threshold": THRESHOLD,
            "scores": [float(s) for s in scores],
            "labels": [int(s >= THRESHOLD) for s in scores]}
        if explanation is not None:
            tops = explanation.top(TOP_FEATURES)
            result["explanations"] = [
                {"method": explanation.method, "logit": float(explanation.logits[i]),
                 "baseline_logit": float(explanation.baseline_logit),
                 "contributions": dict(zip(explanation.features,
                                           map(float, explanation.contributions[i]),
                                           strict=True)),
                 "top_features": tops[i]} for i in range(len(scores))]
        return result

    def _watch(self, release: Release, version: int, *, error: bool,
               scores: np.ndarray | None = None) -> None:
        store = self.catalog.release_store
        if release.candidate is None or store is None:
            return
        self.guard.observe(release, version, error=error, scores=scores)
        verdict = self.guard.verdict(release)
        if verdict is None:
            return
        done = store.rollback(
            release.study, actor=AUTO_ACTOR, reason=verdict.reason, measured=verdict.measured,
            expected_generation=release.generation)
        if done is not None:
            self.metrics.rollbacks.labels(release.study).inc()
            log.warning("%s: v%s rolled back automatically: %s", release.study,
                        release.candidate, verdict.reason)
            self.guard.forget(release.study)
            self.catalog.refresh(release.study)


"""Drift across sites at the coordinator: PSI per feature from the sites' noisy histograms.

Sites answer a drift request (:mod:`server.drift_collect`) with per-feature histograms of
their newest dataset version on the plan's public bins, each cell Gaussian-noised and in
their ledger (:mod:`privacy.dp_drift`). Their answers are kept in
``coordinator/drift/<plan hash prefix>/<site>.json``; :func:`study_drift` combines the newest
answer of every site with the **training-time reference** and records the check in the
registry.

**The reference**, in order of preference:

1. *measured*: when every site whose answer is combined has also answered for the dataset
   version it trained the model on (the registry's lineage names each site's version), the
   sum of those answers. The plan budgets one drift release per run, so asking right after
   training, before new data arrives, gives this reference within the planned budget.
2. *normal*: otherwise, the one training-time description of the features the coordinator
   already holds without any further release: the registered model's federation-wide
   standardisation (from the round-0 statistics: each feature's mean, and its scale, which
   under DP is a quarter of the declared half-width, privacy/dp_statistics.py), as a normal
   distribution on the same bins (tails in the end bins, as sites count values outside the
   range). It also measures how far a feature is from normal, so the PSI of undrifted data
   is not zero (0.07 to 0.36 on six breast-cancer features): a plan using it needs a higher
   ``psi_threshold``. The released evaluation histograms describe scores, not features, and
   are not used.

PSI per feature is computed on the sum of all sites' noisy histograms (negative cells count as
zero); each site's own PSI is shown too. The worst pooled PSI above the plan's
``psi_threshold`` marks the model "retraining recommended" and drafts the next version of
the plan (:mod:`server.drift_draft`). With ``[drift] scores = true`` the final model's score
histograms are compared too (:mod:`server.drift_scores`, measured reference only), and a
pooled score PSI above ``score_psi_threshold`` does the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy import stats

from common.drift import psi
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.plan import StudyPlan, load_plan, plan_hash
from common.workdir import PLAN_PREFIX, CoordinatorDir
from privacy.dp_drift import DriftBins, WatchedFeatures, cleaned_shares, watched_features
from server.drift_scores import ScoreDrift, score_drift
from server.registry import DriftCheck, ModelRegistry, ModelVersion

#: Folder of the sites' drift answers, inside the coordinator folder.
DRIFT_DIR = "drift"


@dataclass(frozen=True)
class SiteDrift:
    """One site's drift answer: noisy counts (features x bins) of one dataset version, and
    the final model's noisy score histogram when the site sent one."""

    site: str
    dataset_version: str
    cells: np.ndarray
    at: str
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class FeaturePsi:
    """One feature's PSI against the reference: across sites, and per site."""

    feature: str
    psi: float
    per_site: dict[str, float]


@dataclass(frozen=True)
class StudyDrift:
    """A drift check of a registered model across the sites that answered."""

    study: str
    version: int
    plan_hash: str
    threshold: float
    sites: dict[str, str]
    features: tuple[FeaturePsi, ...]
    reference: str
    check: DriftCheck | None
    draft_plan: str
    #: The score comparison (plans with ``[drift] scores = true``), else None.
    scores: ScoreDrift | None = None

    @property
    def worst_psi(self) -> float:
        return max(f.psi for f in self.features)

    @property
    def retraining_recommended(self) -> bool:
        return self.worst_psi > self.threshold or (self.scores is not None
                                                   and self.scores.crossed)

    def shifted(self) -> list[str]:
        """Features past the threshold, largest PSI first."""
        return [f.feature for f in sorted(self.features, key=lambda f: -f.psi)
                if f.psi > self.threshold]

    def to_json(self) -> dict[str, object]:
        return {"study": self.study, "version": self.version, "plan_hash": self.plan_hash,
                "threshold": self.threshold, "sites": self.sites, "reference": self.reference,
                "worst_psi": self.worst_psi,
                "retraining_recommended": self.retraining_recommended,
                "shifted_features": self.shifted(), "draft_plan": self.draft_plan,
                "features": [{"feature": f.feature, "psi": f.psi, "per_site": f.per_site}
                             for f in self.features],
                "scores": None if self.scores is None else self.scores.to_json()}


def answers_dir(coordinator_dir: Path, digest: str) -> Path:
    return CoordinatorDir(coordinator_dir).root / DRIFT_DIR / digest[:PLAN_PREFIX]


def save_answer(coordinator_dir: Path, digest: str, answer: SiteDrift) -> Path:
    """Keep one site's answer for one dataset version (a repeated answer replaces it)."""
    name = answer.dataset_version[:32] or "unversioned"
    path = answers_dir(coordinator_dir, digest) / answer.site / f"{name}.json"
    doc: dict[str, object] = {
        "site": answer.site, "dataset_version": answer.dataset_version, "at": answer.at,
        "plan_hash": digest, "cells": answer.cells.tolist()}
    if answer.scores is not None:
        doc["scores"] = answer.scores.tolist()
    atomic_write_bytes(path, json.dumps(doc).encode("utf-8"))
    return path


def load_answers(coordinator_dir: Path, digest: str, bins: DriftBins) -> list[SiteDrift]:
    """Every kept answer for a plan, oldest first; DATA_INVALID for one of another shape."""
    folder = answers_dir(coordinator_dir, digest)
    out = []
    for path in sorted(folder.glob("*/*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            cells = np.asarray(doc["cells"], dtype=np.float64)
            scores = None if doc.get("scores") is None else np.asarray(doc["scores"],
                                                                       dtype=np.float64)
            site, version, at = str(doc["site"]), str(doc["dataset_version"]), str(doc["at"])
        except (OSError, ValueError, KeyError, TypeError):
            raise TesseraError(ErrorCode.DATA_INVALID, f"{path} is not a drift answer") from None
        if cells.shape != (bins.features, bins.bins) or doc.get("plan_hash") != digest \
                or not np.isfinite(cells).all() or site != path.parent.name or (
                    scores is not None and (scores.shape != (bins.bins,)
                                            or not np.isfinite(scores).all())):
            raise TesseraError(ErrorCode.DATA_INVALID, f"{path} does not fit the plan's bins")
        out.append(SiteDrift(site=site, dataset_version=version, cells=cells, at=at,
                             scores=scores))
    return sorted(out, key=lambda a: a.at)


def reference_shares(mean: np.ndarray, scale: np.ndarray, bins: DriftBins) -> np.ndarray:
    """Each feature's normal(mean, scale) mass in its bins, tails in the end bins."""
    out = np.zeros((bins.features, bins.bins))
    for j in range(bins.features):
        inner = bins.edges(j)[1:-1]
        cdf = stats.norm.cdf(inner, loc=float(mean[j]), scale=max(float(scale[j]), 1e-12))
        out[j] = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return out


def _plan_of(coordinator_dir: Path, mv: ModelVersion) -> StudyPlan:
    path = CoordinatorDir(coordinator_dir).plan_path(mv.plan_hash)
    if not path.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"{mv.study} v{mv.version}: its study plan "
                           f"{path} is missing")
    plan = load_plan(path)
    if plan_hash(plan) != mv.plan_hash:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{path} does not match the model's plan hash {mv.plan_hash[:16]}")
    return plan


def _standardisation(registry: ModelRegistry, mv: ModelVersion, plan: StudyPlan,
                     watched: WatchedFeatures) -> tuple[np.ndarray, np.ndarray]:
    """The model's federation mean and scale of the watched features."""
    doc = json.loads(registry.load_bytes(mv))
    mean = np.asarray(doc.get("mean", []), dtype=np.float64)
    std = np.asarray(doc.get("std", []), dtype=np.float64)
    features = len(plan.dataset.features)
    if mean.shape != (features,) or std.shape != (features,):
        raise TesseraError(ErrorCode.DATA_INVALID, f"{mv.study} v{mv.version}: the model "
                           "file has no standardisation for the plan's features")
    columns = list(watched.columns)
    return mean[columns], std[columns]


@dataclass(frozen=True)
class Reference:
    """What each site's current answer is compared with: per site, and summed."""

    kind: str
    per_site: dict[str, np.ndarray]
    pooled: np.ndarray


def reference_of(answers: list[SiteDrift], trained_on: dict[str, str], normal: np.ndarray,
                 current: dict[str, SiteDrift]) -> Reference:
    """The measured reference when every current site answered for the version it trained
    on; otherwise the normal one from the model's standardisation (module docstring)."""
    measured = {a.site: a.cells for a in answers
                if a.site in current and trained_on.get(a.site) == a.dataset_version}
    if current and set(measured) == set(current):
        return Reference(kind="measured", per_site=measured,
                         pooled=sum(measured.values(), np.zeros_like(normal)))
    return Reference(kind="normal", per_site={site: normal for site in current},
                     pooled=normal)


def combine(names: tuple[str, ...], current: dict[str, SiteDrift],
            reference: Reference) -> tuple[FeaturePsi, ...]:
    """PSI per feature of the summed answers (and of each site's) against the reference."""
    pooled = sum((a.cells for a in current.values()), np.zeros_like(reference.pooled))
    out = []
    for j, name in enumerate(names):
        per_site = {site: _psi(reference.per_site[site][j], a.cells[j])
                    for site, a in sorted(current.items())}
        out.append(FeaturePsi(feature=name, psi=_psi(reference.pooled[j], pooled[j]),
                              per_site=per_site))
    return tuple(out)


def _psi(reference: np.ndarray, cells: np.ndarray) -> float:
    try:
        return psi(cleaned_shares(reference), cleaned_shares(cells))
    except TesseraError:  # every cell noised to zero: nothing to compare
        return math.nan


REFERENCE_TEXT = {
    "measured": "the sites' drift answers for the dataset versions the model trained on",
    "normal": "normal(mean, scale) of the model's federation standardisation (round-0 "
              "statistics)",
}


def _reason(result: StudyDrift) -> str:
    """Why the next plan version was drafted, for its description."""
    parts = []
    if result.worst_psi > result.threshold:
        parts.append(f"PSI {result.worst_psi:.3f} > {result.threshold:g} in "
                     f"{', '.join(result.shifted()[:5])}")
    if result.scores is not None and result.scores.crossed:
        parts.append(f"score PSI {result.scores.psi:.3f} > {result.scores.threshold:g}")
    return f"drift check {datetime.now(UTC).date().isoformat()}: {'; '.join(parts)}"


def study_drift(coordinator_dir: Path, study: str, *, version: int | None = None,
                record: bool = True) -> StudyDrift:
    """Combine the newest kept answer of every site for a registered model; record the check
    (and draft the next plan when the threshold is crossed) unless ``record`` is False."""
    from server.drift_draft import draft_next_plan

    coordinator_dir = Path(coordinator_dir)
    with ModelRegistry.open(coordinator_dir) as registry:
        mv = registry.latest(study) if version is None else registry.get(study, version)
        plan = _plan_of(coordinator_dir, mv)
        watched = watched_features(plan)
        answers = load_answers(coordinator_dir, mv.plan_hash, watched.bins)
        if not answers:
            raise TesseraError(ErrorCode.NOT_FOUND, f"study '{study}': no site has answered a "
                               "drift request for this plan yet")
        current = {a.site: a for a in answers}  # oldest first: the newest one wins
        mean, scale = _standardisation(registry, mv, plan, watched)
        trained_on = mv.lineage.get("dataset_versions") or {}
        reference = reference_of(answers, dict(trained_on), reference_shares(
            mean, scale, watched.bins), current)
        features = combine(watched.names, current, reference)
        if any(math.isnan(f.psi) for f in features):
            raise TesseraError(ErrorCode.DATA_INVALID, "the sites' summed drift histograms "
                               "hold no rows after noise for some feature")
        assert plan.drift is not None
        scores = score_drift(answers, dict(trained_on), current,
                             threshold=plan.drift.score_psi_threshold) \
            if plan.drift.scores else None
        result = StudyDrift(
            study=mv.study, version=mv.version, plan_hash=mv.plan_hash,
            threshold=plan.drift.psi_threshold,
            sites={site: a.dataset_version for site, a in current.items()}, features=features,
            reference=REFERENCE_TEXT[reference.kind], check=None, draft_plan="",
            scores=scores)
        if not record:
            return result
        draft = ""
        if result.retraining_recommended:
            draft = draft_next_plan(coordinator_dir, plan, reason=_reason(result))
        details: dict[str, object] = {"sites": result.sites, "reference": reference.kind,
                                      "psi": {f.feature: f.psi for f in features}}
        if scores is not None:
            details["scores"] = scores.to_json()
        check = registry.record_drift(
            mv, worst_psi=result.worst_psi, threshold=result.threshold, draft_plan=draft,
            details=details, recommended=result.retraining_recommended)
    return replace(result, check=check, draft_plan=draft)

"""Drift at a site: its newest dataset version against the version a kept model trained on.

For a final global model the site kept (:mod:`client_app.learning.local_eval`), the
**reference** is the version of the study's dataset that was current when the model was
kept (the newest version registered at or before that moment: the one the site trained
on, unless a version was registered between its last round and the model's evaluation) and
the **current** version is the newest one. Withdrawn patients are left out of both.

Per feature: the population stability index over the reference's deciles and the two-sample
Kolmogorov-Smirnov statistic with its asymptotic p-value (:mod:`common.drift`). For the
model: the PSI and KS of its scores on the two versions (ten equal bins over [0, 1]) and the
mean score of each. A PSI above :data:`MODERATE_PSI` is a moderate shift, above
:data:`MAJOR_PSI` a major one.

Everything is computed here from rows that never leave the site; the report holds
statistics only (no patient ids, no row values).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from client_app.custody.vault import SiteVault
from client_app.datasets.versions import DatasetVersion, dataset_versions
from client_app.governance.consent import withdrawn_ids, without_patients
from client_app.learning.local_eval import MODEL_FORMAT, model_name, stored_models
from client_app.learning.site_data import standardise
from common.datasets import TableData, read_csv_bytes
from common.drift import counts, ks_p_value, ks_statistic, psi, quantile_edges, score_counts
from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from common.models import build_model, predict_scores, vector_to_model
from common.plan import StudyPlan, parse_plan

MODERATE_PSI = 0.1
MAJOR_PSI = 0.25


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's shift from the reference version to the current one."""

    feature: str
    psi: float
    ks: float
    ks_p_value: float


@dataclass(frozen=True)
class DriftReport:
    """A kept model's drift report at this site (statistics only)."""

    model: str
    study: str
    plan_hash: str
    dataset: str
    reference_version: str
    current_version: str
    reference_rows: int
    current_rows: int
    features: tuple[FeatureDrift, ...]
    score_psi: float
    score_ks: float
    mean_score_reference: float
    mean_score_current: float

    @property
    def same_version(self) -> bool:
        return self.reference_version == self.current_version

    @property
    def level(self) -> str:
        """``stable``, ``moderate`` or ``major``: the worst PSI, features or scores."""
        worst = max([self.score_psi, *(f.psi for f in self.features)])
        return "major" if worst > MAJOR_PSI else "moderate" if worst > MODERATE_PSI \
            else "stable"

    def shifted(self, *, threshold: float = MAJOR_PSI) -> list[str]:
        """Features whose PSI exceeds ``threshold``, largest first."""
        return [f.feature for f in sorted(self.features, key=lambda f: -f.psi)
                if f.psi > threshold]

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "features": [asdict(f) for f in self.features],
                "level": self.level, "same_version": self.same_version,
                "shifted_features": self.shifted()}


def _model_doc(vault: SiteVault, name: str | None) -> dict[str, Any]:
    kept = stored_models(vault)
    if not kept:
        raise TesseraError(ErrorCode.NOT_FOUND, "no global model is stored at this site yet; "
                           "drift is measured against the data a kept model trained on")
    names = [m.name for m in kept]
    chosen = names[0] if name is None else name
    if chosen not in names:
        raise TesseraError(ErrorCode.NOT_FOUND, f"no stored model named '{chosen}'")
    doc = json.loads(vault.read_model(chosen))
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise TesseraError(ErrorCode.DATA_INVALID, f"model '{chosen}' is not a site model file")
    return doc


def _versions(vault: SiteVault, dataset: str, kept_at: datetime
              ) -> tuple[DatasetVersion, DatasetVersion]:
    versions = dataset_versions(vault.site, dataset)
    if not versions:
        raise TesseraError(ErrorCode.NOT_FOUND, f"dataset '{dataset}' has no registered version")
    before = [v for v in versions if v.at <= kept_at]
    if not before:
        raise TesseraError(ErrorCode.NOT_FOUND, f"dataset '{dataset}': no version was "
                           "registered before the model was kept")
    return before[-1], versions[-1]


def _table(vault: SiteVault, plan: StudyPlan, version: DatasetVersion,
           excluded: frozenset[str]) -> TableData:
    content = vault.read_dataset_version(plan.dataset.name, version.version)
    if hashlib.sha256(content).hexdigest() != version.version:
        raise TesseraError(ErrorCode.DATA_INVALID, f"dataset '{plan.dataset.name}': stored "
                           f"content does not match version {version.version[:12]}")
    table = read_csv_bytes(content, plan.dataset,
                           source_name=f"dataset '{plan.dataset.name}' {version.version[:12]}")
    kept, _ = without_patients(table, excluded)
    if kept.n_rows == 0:
        raise TesseraError(ErrorCode.DATA_INVALID, f"dataset '{plan.dataset.name}' version "
                           f"{version.version[:12]} has no rows left after consent")
    return kept


def _scores(doc: dict[str, Any], plan: StudyPlan, X: np.ndarray) -> np.ndarray:
    model = build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)
    layout = [TensorSlot(name=s["name"], shape=tuple(s["shape"]), offset=int(s["offset"]),
                         length=int(s["length"])) for s in doc["layout"]]
    vector_to_model(model, np.asarray(doc["values"], dtype=np.float64), layout)
    X_std = standardise(X, np.asarray(doc["mean"]), np.asarray(doc["std"]))
    return np.clip(predict_scores(model, X_std), 0.0, 1.0)


def kept_model_scores(vault: SiteVault, plan: StudyPlan, *, plan_hash: str,
                      X: np.ndarray) -> np.ndarray | None:
    """The scores on raw rows ``X`` of the final model this site kept for ``plan_hash``
    (it decrypted it itself); None when it kept none (e.g. it missed the final round)."""
    name = model_name(plan, plan_hash)
    if not (vault.site.models_dir / f"{name}.enc").is_file():
        return None
    doc = _model_doc(vault, name)
    if doc.get("plan_hash") != plan_hash or list(doc["features"]) != list(plan.dataset.features):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"model '{name}' is not the final model of this plan")
    return _scores(doc, plan, X)


def feature_drift(name: str, reference: np.ndarray, current: np.ndarray) -> FeatureDrift:
    """PSI (reference deciles) and KS of one feature's values."""
    edges = quantile_edges(reference)
    statistic = ks_statistic(reference, current)
    return FeatureDrift(feature=name,
                        psi=psi(counts(reference, edges), counts(current, edges)),
                        ks=statistic,
                        ks_p_value=ks_p_value(statistic, reference.size, current.size))


def drift_report(vault: SiteVault, *, model: str | None = None) -> DriftReport:
    """Drift of the study's newest dataset version against a kept model's training version."""
    doc = _model_doc(vault, model)
    plan = parse_plan(doc["plan_toml"])
    if list(doc["features"]) != list(plan.dataset.features):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"model '{doc['name']}': its features differ from its plan's")
    reference_version, current_version = _versions(vault, plan.dataset.name,
                                                   datetime.fromisoformat(doc["at"]))
    excluded = withdrawn_ids(vault, study=plan.name)
    reference = _table(vault, plan, reference_version, excluded)
    current = _table(vault, plan, current_version, excluded)
    features = tuple(feature_drift(name, reference.X[:, j], current.X[:, j])
                     for j, name in enumerate(plan.dataset.features))
    ref_scores, cur_scores = _scores(doc, plan, reference.X), _scores(doc, plan, current.X)
    return DriftReport(
        model=str(doc["name"]), study=plan.name, plan_hash=str(doc["plan_hash"]),
        dataset=plan.dataset.name, reference_version=reference_version.version,
        current_version=current_version.version, reference_rows=reference.n_rows,
        current_rows=current.n_rows, features=features,
        score_psi=psi(score_counts(ref_scores), score_counts(cur_scores)),
        score_ks=ks_statistic(ref_scores, cur_scores),
        mean_score_reference=float(ref_scores.mean()),
        mean_score_current=float(cur_scores.mean()))

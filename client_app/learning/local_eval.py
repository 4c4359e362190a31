"""A site's own copy of each study's final global model, and its evaluation on local data.

When the site agent evaluates a study's final round it keeps the decrypted global model, with
the federation-wide standardisation, the plan and its hash, in the vault (``models/*.enc``,
JSON). The operator can then score that model on the site's held-out split of the current
dataset (withdrawn patients left out): accuracy and the confusion matrix at 0.5, the exact
AUC and the ROC curve, and, when the plan names a sensitive column, the confusion counts of
each of its groups (for fairness at this site), computed here from the scores, which never
leave the site. Only metrics and counts go into the ``local_evaluation`` site event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from torch import nn

from client_app.custody.vault import SiteVault
from client_app.learning.site_data import load_split, standardise
from client_app.store.events import SiteEvent
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import StudyPlan, parse_plan, plan_to_toml

MODEL_FORMAT = "tessera-site-model"
MODEL_VERSION = 1
THRESHOLD = 0.5


@dataclass(frozen=True)
class StoredModel:
    """A final global model kept at this site."""

    name: str
    study: str
    plan_hash: str
    round: int
    at: datetime

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "study": self.study, "plan_hash": self.plan_hash,
                "round": self.round, "at": self.at.isoformat()}


@dataclass(frozen=True)
class LocalEvaluation:
    """A stored model's metrics on this site's held-out rows."""

    model: str
    study: str
    plan_hash: str
    dataset_version: str
    n: int
    #: Rows of withdrawn patients left out of this dataset's split (training and held-out).
    excluded_by_consent: int
    threshold: float
    accuracy: float
    auc: float
    tp: int
    fp: int
    tn: int
    fn: int
    roc_fpr: tuple[float, ...]
    roc_tpr: tuple[float, ...]
    #: Per group of the plan's sensitive column: its (tp, fp, tn, fn) at the threshold.
    group_counts: tuple[tuple[str, tuple[int, int, int, int]], ...] = ()

    def to_json(self) -> dict[str, object]:
        """JSON-ready fields; an undefined AUC (one class only) is None."""
        return {"model": self.model, "study": self.study, "plan_hash": self.plan_hash,
                "dataset_version": self.dataset_version, "n": self.n,
                "excluded_by_consent": self.excluded_by_consent, "threshold": self.threshold,
                "accuracy": _finite(self.accuracy), "auc": _finite(self.auc),
                "tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn,
                "roc_fpr": list(self.roc_fpr), "roc_tpr": list(self.roc_tpr),
                "groups": _groups_json(self.group_counts)}


def _groups_json(
    counts: tuple[tuple[str, tuple[int, int, int, int]], ...],
) -> dict[str, dict[str, int]]:
    return {name: dict(zip(("tp", "fp", "tn", "fn"), cells, strict=True))
            for name, cells in counts}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def model_name(plan: StudyPlan, digest: str) -> str:
    """The vault name of a study's final model at a site."""
    return f"{plan.name}-{digest[:12]}"


# -- keeping the final model -------------------------------------------------------------------


def keep_final_model(vault: SiteVault, plan: StudyPlan, store: SiteStore, *, plan_hash: str,
                     round_: int, model: nn.Module, mean: np.ndarray,
                     std: np.ndarray) -> StoredModel | None:
    """Store the decrypted global model of the plan's final round (other rounds: None)."""
    if round_ != plan.training.rounds:
        return None
    values, layout = model_to_vector(model)
    name = model_name(plan, plan_hash)
    at = datetime.now(UTC)
    doc = {
        "format": MODEL_FORMAT, "version": MODEL_VERSION, "name": name, "study": plan.name,
        "plan_hash": plan_hash, "round": round_, "at": at.isoformat(),
        "features": list(plan.dataset.features), "mean": np.asarray(mean).tolist(),
        "std": np.asarray(std).tolist(), "values": values.tolist(),
        "layout": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                    "length": s.length} for s in layout],
        "plan_toml": plan_to_toml(plan),
    }
    vault.write_model(name, json.dumps(doc, sort_keys=True).encode("utf-8"))
    store.record_event(SiteEvent.GLOBAL_MODEL_STORED, plan_hash=plan_hash,
                       details={"model": name, "round": round_})
    return StoredModel(name=name, study=plan.name, plan_hash=plan_hash, round=round_, at=at)


def _load(vault: SiteVault, name: str) -> dict[str, Any]:
    doc = json.loads(vault.read_model(name))
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise TesseraError(ErrorCode.DATA_INVALID, f"model '{name}' is not a site model file")
    return doc


def _stored(doc: dict[str, Any]) -> StoredModel:
    return StoredModel(name=str(doc["name"]), study=str(doc["study"]),
                       plan_hash=str(doc["plan_hash"]), round=int(doc["round"]),
                       at=datetime.fromisoformat(doc["at"]))


def stored_models(vault: SiteVault) -> list[StoredModel]:
    """The final global models kept at this site, newest first."""
    folder = vault.site.models_dir
    models = []
    for path in sorted(folder.glob("*.enc")) if folder.is_dir() else []:
        doc = json.loads(vault.read_model(path.stem))
        if isinstance(doc, dict) and doc.get("format") == MODEL_FORMAT:
            models.append(_stored(doc))
    return sorted(models, key=lambda m: m.at, reverse=True)


# -- scoring -----------------------------------------------------------------------------------


def exact_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC from raw scores (Mann-Whitney, ties count one half); nan with one class."""
    y = np.asarray(labels)
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(np.asarray(scores), return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    average_rank = first_rank + (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve over every distinct score, from (0, 0) to (1, 1); empty with one class."""
    y = np.asarray(labels)
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranked, truth = np.asarray(scores)[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]
    tps = np.cumsum(truth == 1)[last_of_tie]
    fps = np.cumsum(truth == 0)[last_of_tie]
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def _model(doc: dict[str, Any], plan: StudyPlan) -> nn.Module:
    if list(doc["features"]) != list(plan.dataset.features):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"model '{doc['name']}': its features differ from its plan's")
    model = build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)
    layout = [TensorSlot(name=s["name"], shape=tuple(s["shape"]), offset=int(s["offset"]),
                         length=int(s["length"])) for s in doc["layout"]]
    vector_to_model(model, np.asarray(doc["values"], dtype=np.float64), layout)
    return model


def _confusion(predicted: np.ndarray, y: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) of boolean predictions against 0/1 labels."""
    return (int((predicted & (y == 1)).sum()), int((predicted & (y == 0)).sum()),
            int((~predicted & (y == 0)).sum()), int((~predicted & (y == 1)).sum()))


def group_confusion(predicted: np.ndarray, y: np.ndarray,
                    groups: np.ndarray | None) -> tuple[tuple[str, tuple[int, int, int, int]],
                                                        ...]:
    """The confusion counts of each group value (sorted by name); empty without groups."""
    if groups is None:
        return ()
    return tuple((str(g), _confusion(predicted[groups == g], y[groups == g]))
                 for g in sorted({str(v) for v in groups}))


def evaluate_model(vault: SiteVault, *, model: str | None = None,
                   progress: Callable[[float], None] | None = None,
                   cancelled: Callable[[], bool] | None = None) -> LocalEvaluation:
    """Score a stored global model (default: the newest) on this site's held-out split.

    Uses the current dataset and leaves out withdrawn patients; NOT_FOUND when no such
    model is stored, CANCELLED when ``cancelled()`` turns true between steps.
    """

    def step(fraction: float) -> None:
        if cancelled is not None and cancelled():
            raise TesseraError(ErrorCode.CANCELLED, "local evaluation cancelled")
        if progress is not None:
            progress(fraction)

    step(0.0)
    models = stored_models(vault)
    if not models:
        raise TesseraError(ErrorCode.NOT_FOUND, "no global model is stored at this site yet; "
                           "one is kept when a study's final round is evaluated here")
    names = [m.name for m in models]
    name = names[0] if model is None else model
    if name not in names:
        raise TesseraError(ErrorCode.NOT_FOUND, f"no stored model named '{name}'")
    doc = _load(vault, name)
    plan = parse_plan(doc["plan_toml"])
    net = _model(doc, plan)
    step(0.2)
    split = load_split(vault, plan)
    step(0.5)
    X = standardise(split.test.X, np.asarray(doc["mean"]), np.asarray(doc["std"]))
    scores = np.clip(predict_scores(net, X), 0.0, 1.0)
    step(0.8)
    y = split.test.y
    predicted = scores >= THRESHOLD
    tp, fp, tn, fn = _confusion(predicted, y)
    by_group = group_confusion(predicted, y, split.test.groups)
    fpr, tpr = roc_points(scores, y)
    result = LocalEvaluation(
        model=name, study=plan.name, plan_hash=str(doc["plan_hash"]),
        dataset_version=split.dataset_version, n=len(y),
        excluded_by_consent=split.excluded_by_consent, threshold=THRESHOLD,
        accuracy=(tp + tn) / len(y) if len(y) else math.nan, auc=exact_auc(scores, y),
        tp=tp, fp=fp, tn=tn, fn=fn,
        roc_fpr=tuple(float(v) for v in fpr), roc_tpr=tuple(float(v) for v in tpr),
        group_counts=by_group,
    )
    step(0.9)
    with SiteStore.open(vault.site) as store:
        store.record_event(SiteEvent.LOCAL_EVALUATION, plan_hash=result.plan_hash, details={
            "model": name, "dataset_version": result.dataset_version, "n": result.n,
            "excluded_by_consent": result.excluded_by_consent,
            "accuracy": _finite(result.accuracy), "auc": _finite(result.auc),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn, "groups": _groups_json(by_group),
        })
    if progress is not None:
        progress(1.0)
    return result

"""The benchmark reference: a centralised, non-private model on the pooled data, and the
released model scored exactly on the pooled held-out rows.

Both are computed outside the federation, by the demo launcher that made the partitions,
only to tell how much accuracy privacy and federation cost (and, with DP, how far the
federation's noisy evaluation is from the exact one). They are labelled as such in the
report and never used by the federation itself.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from common.datasets import TableData
from common.layout import TensorSlot
from common.models import build_model, predict_scores, vector_to_model
from tessera.local_federation import LocalFederation


def pooled_splits(fed: LocalFederation) -> tuple[TableData, TableData]:
    """The union of the sites' train splits and of their held-out splits, as each site makes
    them (keyed by its own split secret, which the launcher knows because it plays every
    site)."""
    splits = [fed.site_split(index) for index in range(len(fed.sites))]
    train_rows = np.concatenate([train for train, _ in splits])
    test_rows = np.concatenate([test for _, test in splits])
    return fed.data.take(train_rows), fed.data.take(test_rows)


def centralised_baseline(fed: LocalFederation) -> dict[str, object]:
    """Fit scikit-learn logistic regression on the pooled train split; score the test rows."""
    train, test = pooled_splits(fed)
    scaler = StandardScaler().fit(train.X)
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(train.X), train.y)
    scores = model.predict_proba(scaler.transform(test.X))[:, 1]
    return {
        "kind": "benchmark reference: centralised, non-private, computed outside the federation",
        "model": "scikit-learn LogisticRegression on pooled train splits",
        "accuracy": float(accuracy_score(test.y, scores >= 0.5)),
        "auc": float(roc_auc_score(test.y, scores)),
        "train_examples": int(train.n_rows),
        "test_examples": int(test.n_rows),
    }


def released_model_check(fed: LocalFederation, result: dict[str, Any]) -> dict[str, object] | None:
    """The released model scored exactly on the pooled held-out rows: what the federation's
    own (with DP, noisy) metrics estimate. None when no model was released."""
    model_info = result.get("model") or {}
    if not model_info.get("path"):
        return None
    doc = json.loads((fed.coordinator_dir / model_info["path"]).read_text(encoding="utf-8"))
    model = build_model(fed.plan.model, n_features=len(doc["features"]), seed=fed.plan.seed)
    layout = [TensorSlot(name=s["name"], shape=tuple(s["shape"]), offset=s["offset"],
                         length=s["length"]) for s in doc["layout"]]
    vector_to_model(model, np.asarray(doc["values"]), layout)
    _, test = pooled_splits(fed)
    X = (test.X - np.asarray(doc["mean"])) / np.asarray(doc["std"])
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    return {
        "kind": "benchmark check: the released model on the pooled held-out rows, exact, "
                "computed outside the federation",
        "accuracy": float(accuracy_score(test.y, scores >= 0.5)),
        "auc": float(roc_auc_score(test.y, scores)),
        "test_examples": int(test.n_rows),
    }

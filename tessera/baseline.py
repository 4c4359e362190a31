"""The benchmark reference: a centralised, non-private model on the pooled data.

This is computed outside the federation, by the demo launcher that made the partitions,
only to tell how much accuracy privacy and federation cost. It is labelled as such in the
report and never used by the federation itself.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from common.datasets import TableData
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

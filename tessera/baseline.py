"""The benchmark reference: a centralised, non-private model on the pooled data.

This is computed outside the federation, by the demo launcher that made the partitions,
only to tell how much accuracy privacy and federation cost. It is labelled as such in the
report and never used by the federation itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from common.datasets import TableData, stratified_split


def pooled_splits(
    data: TableData, partitions: Sequence[Sequence[int]], *, test_fraction: float, seed: int
) -> tuple[TableData, TableData]:
    """The union of the sites' train splits and of their test splits, as the sites make them."""
    train_rows: list[np.ndarray] = []
    test_rows: list[np.ndarray] = []
    for rows in partitions:
        site_rows = np.asarray(rows, dtype=np.int64)
        train_idx, test_idx = stratified_split(
            data.y[site_rows], test_fraction=test_fraction, seed=seed
        )
        train_rows.append(site_rows[train_idx])
        test_rows.append(site_rows[test_idx])
    return data.take(np.concatenate(train_rows)), data.take(np.concatenate(test_rows))


def centralised_baseline(
    data: TableData, partitions: Sequence[Sequence[int]], *, test_fraction: float, seed: int
) -> dict[str, object]:
    """Fit scikit-learn logistic regression on the pooled train split; score the test rows."""
    train, test = pooled_splits(data, partitions, test_fraction=test_fraction, seed=seed)
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

"""A site's data for a study: load the registered file, split it, standardise it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from client_app.custody.vault import SiteVault
from client_app.datasets.versions import read_current
from client_app.governance.consent import apply_consent
from common.datasets import TableData, read_csv_bytes, stratified_split
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan

#: Features whose federation-wide standard deviation is below this are left unscaled.
MIN_STD = 1e-9


@dataclass(frozen=True)
class SiteSplit:
    """A site's train and held-out rows for one study, with the dataset's identity."""

    dataset_id: str
    dataset_version: str
    train: TableData
    test: TableData
    #: Rows left out because the patient withdrew consent (for this study or globally).
    excluded_by_consent: int = 0


def load_split(vault: SiteVault, plan: StudyPlan) -> SiteSplit:
    """Read the study's dataset at this site and make the stratified split with the study seed."""
    raw, version = read_current(vault, plan.dataset.name)
    data = read_csv_bytes(raw, plan.dataset, source_name=f"dataset '{plan.dataset.name}'")
    train_idx, test_idx = stratified_split(
        data.y, test_fraction=plan.dataset.test_fraction, seed=plan.seed
    )
    # Split first so other patients keep their assignment, then drop withdrawn patients.
    train, test, excluded = apply_consent(
        vault, plan.name, data.take(train_idx), data.take(test_idx)
    )
    return SiteSplit(
        dataset_id=plan.dataset.name,
        dataset_version=version.version,
        train=train,
        test=test,
        excluded_by_consent=excluded,
    )


def feature_sums(train: TableData) -> np.ndarray:
    """Per-feature sums followed by per-feature sums of squares (for federation statistics)."""
    return np.concatenate([train.X.sum(axis=0), (train.X**2).sum(axis=0)])


def standardiser(sums: np.ndarray, total: float) -> tuple[np.ndarray, np.ndarray]:
    """Federation-wide mean and standard deviation from summed statistics."""
    if total <= 0:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "federation statistics cover no examples")
    n_features = sums.size // 2
    mean = sums[:n_features] / total
    var = np.maximum(sums[n_features:] / total - mean**2, 0.0)
    std = np.sqrt(var)
    std[std < MIN_STD] = 1.0
    return mean, std


def standardise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Apply a standardisation."""
    return (X - mean) / std

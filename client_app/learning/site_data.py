"""A site's data for a study: load the registered file, split it, standardise it.

The split is the site's own (:func:`common.splits.keyed_split`, stratified by label, under
the vault's ``split-key``): a patient is on the same side in every study, whatever the
plan's seed. The parsed table and its split are kept per process, keyed by every input.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from client_app.custody.site_secrets import split_secret
from client_app.custody.vault import SiteVault
from client_app.datasets.identity import public_version
from client_app.datasets.versions import read_current
from client_app.governance.consent import apply_consent
from common.datasets import TableData, read_csv_bytes
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan
from common.splits import keyed_split

#: Features whose federation-wide standard deviation is below this are left unscaled.
MIN_STD = 1e-9


@dataclass(frozen=True)
class SiteSplit:
    """A site's train and held-out rows for one study, with the dataset's identity."""

    dataset_id: str
    #: The version's content hash: it names the version at this site only.
    dataset_version: str
    train: TableData
    test: TableData
    #: Rows left out because the patient withdrew consent (for this study or globally).
    excluded_by_consent: int = 0
    #: The keyed digest that stands for the version outside the site.
    public_version: str = ""


def site_split_indices(vault: SiteVault, data: TableData, *, dataset: str,
                       test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """This site's (train, test) row indices of ``data``: keyed by the site's split secret."""
    return keyed_split(data.patient_ids, data.y, secret=split_secret(vault), dataset=dataset,
                       test_fraction=test_fraction)


#: Parsed tables and their split, by everything they are computed from: the site folder, the
#: dataset's name and content hash (checked against the stored bytes at every read), the
#: plan's dataset section (columns, label, test fraction) and the split key's digest. A task
#: still reads and checks the file and applies consent; it skips parsing and splitting when a
#: previous task of this process did both on the same inputs.
_PARSED: OrderedDict[tuple[str, ...], tuple[TableData, np.ndarray, np.ndarray]] = OrderedDict()
#: At most this many table cells are kept parsed (the oldest tables go first).
MAX_PARSED_CELLS = 20_000_000


def _parsed(vault: SiteVault, plan: StudyPlan, raw: bytes,
            version: str) -> tuple[TableData, np.ndarray, np.ndarray]:
    """The dataset parsed and split this site's way, from the cache when the inputs match."""
    name, secret = plan.dataset.name, split_secret(vault)
    key = (str(vault.site.root), name, version, plan.dataset.model_dump_json(),
           hashlib.sha256(secret).hexdigest())
    if (hit := _PARSED.get(key)) is not None:
        _PARSED.move_to_end(key)
        return hit
    data = read_csv_bytes(raw, plan.dataset, source_name=f"dataset '{name}'")
    train_idx, test_idx = keyed_split(data.patient_ids, data.y, secret=secret, dataset=name,
                                      test_fraction=plan.dataset.test_fraction)
    _PARSED[key] = (data, train_idx, test_idx)
    while sum(d.X.size for d, _, _ in _PARSED.values()) > MAX_PARSED_CELLS and _PARSED:
        _PARSED.popitem(last=False)
    return data, train_idx, test_idx


def load_split(vault: SiteVault, plan: StudyPlan) -> SiteSplit:
    """Read the study's dataset at this site and split it the site's way (never by seed)."""
    name = plan.dataset.name
    raw, version = read_current(vault, name)
    data, train_idx, test_idx = _parsed(vault, plan, raw, version.version)
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
        public_version=public_version(vault, name, version.version),
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

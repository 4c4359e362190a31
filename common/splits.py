"""A site's keyed train/held-out split: the same for a patient in every study.

Each patient gets a uniform draw from an HMAC of the dataset name and the patient id under a
secret of the site (:func:`held_out_draws`), so the split never depends on a study or a plan
seed, and nobody without the secret can tell which rows a site holds out. Two ways to turn
draws into sides (:func:`keyed_split`):

- **stratified** (the default): each label holds out exactly its share of rows, those with
  the smallest draws. The split is fixed for a dataset version; a new version moves at most
  the rows whose draws sit near the cut;
- **by threshold**: a row is held out when its draw is below ``test_fraction``, whatever
  the other rows (the label shares then vary by chance).

Either way a smaller fraction holds out a subset of a larger one's rows, and every label
with at least two rows is on both sides.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import numpy as np

from common.errors import ErrorCode, TesseraError

#: Domain separation of the split's HMAC input.
_SPLIT_CONTEXT = b"tessera/held-out/v1\x00"
#: Shortest split secret accepted.
MIN_SECRET_BYTES = 16


def held_out_draws(patient_ids: Sequence[str] | np.ndarray, *, secret: bytes,
                   dataset: str) -> np.ndarray:
    """One uniform value in [0, 1) per patient, fixed by ``secret``, ``dataset`` and the id.

    The value is the first 53 bits of HMAC-SHA256(secret, context || dataset || 0 || id)
    divided by 2^53.
    """
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"secret: must be at least {MIN_SECRET_BYTES} bytes")
    if not isinstance(dataset, str) or not dataset:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "dataset: must be a non-empty name")
    prefix = _SPLIT_CONTEXT + dataset.encode("utf-8") + b"\x00"
    draws = np.empty(len(patient_ids), dtype=np.float64)
    for i, patient in enumerate(patient_ids):
        digest = hmac.new(secret, prefix + str(patient).encode("utf-8"), hashlib.sha256).digest()
        draws[i] = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
    return draws


def keyed_split(
    patient_ids: Sequence[str] | np.ndarray, y: np.ndarray, *, secret: bytes, dataset: str,
    test_fraction: float, stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) row indices of the keyed split.

    ``stratify``: each label holds out ``round(rows x test_fraction)`` of its rows, those
    with the smallest draws; otherwise a row is held out when its draw is below
    ``test_fraction``. Every label with at least two rows appears on both sides (its
    smallest draw is held out, its largest kept for training, if need be).
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) \
            or not 0.0 < test_fraction < 1.0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "test_fraction: must be in (0, 1)")
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != len(patient_ids):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "y: must be a 1-D array with one label per patient id")
    draws = held_out_draws(patient_ids, secret=secret, dataset=dataset)
    test = draws < test_fraction
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        if stratify:
            order = rows[np.argsort(draws[rows], kind="stable")]
            n_test = round(len(rows) * test_fraction)
            test[rows] = False
            test[order[:n_test]] = True
        if len(rows) < 2:
            continue
        if not test[rows].any():
            test[rows[np.argmin(draws[rows])]] = True
        elif test[rows].all():
            test[rows[np.argmax(draws[rows])]] = False
    return np.flatnonzero(~test), np.flatnonzero(test)

"""Score drift across sites at the coordinator: the final model's score histograms now
against the ones the sites released for the dataset versions the model trained on.

With ``[drift] scores = true`` a site that kept the study's final model adds a noisy
histogram of that model's scores (``bins`` equal bins over [0, 1]) to its drift answer
(:mod:`privacy.dp_drift`). The **reference** is measured only: each site's own score
histogram for the version its lineage says it trained on, which is the same model, the same
rows definition (every consented row of a version, both splits), the same bins and the same
mechanism as the current answer, so undrifted data gives a PSI of noise alone (and exactly 0
while a site's newest version is still the trained one: it repeats its released answer).

The evaluation histograms the coordinator already holds for the final model are not used:
they cover the held-out rows only (a fifth of the rows) while a drift answer covers all of
them, the training rows included, on which a fitted model scores more confidently, so the
two differ without any drift; they are also summed over sites before the coordinator sees
them and cut into their own bins with small cells suppressed. A site without a reference
(it answered for no trained-on version with scores) or without scores now (it kept no final
model) is listed as not compared; the pooled PSI sums the sites compared on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from common.drift import psi
from common.errors import TesseraError
from privacy.dp_drift import cleaned_shares


class ScoredAnswer(Protocol):
    """What a site's drift answer offers here (:class:`server.drift.SiteDrift`)."""

    @property
    def site(self) -> str: ...

    @property
    def dataset_version(self) -> str: ...

    @property
    def scores(self) -> np.ndarray | None: ...


@dataclass(frozen=True)
class ScoreDrift:
    """The final model's score PSI: all compared sites together, per site, and who was not
    compared (and why)."""

    psi: float | None
    per_site: dict[str, float | None]
    threshold: float
    not_compared: dict[str, str]

    @property
    def crossed(self) -> bool:
        return self.psi is not None and self.psi > self.threshold

    def to_json(self) -> dict[str, object]:
        return {"psi": self.psi, "threshold": self.threshold, "per_site": self.per_site,
                "retraining_recommended": self.crossed, "not_compared": self.not_compared}


def _psi(reference: np.ndarray, current: np.ndarray) -> float | None:
    try:
        value = psi(cleaned_shares(reference), cleaned_shares(current))
    except TesseraError:  # every cell noised to zero: nothing to compare
        return None
    return value if math.isfinite(value) else None


def score_drift(answers: Sequence[ScoredAnswer], trained_on: Mapping[str, str],
                current: Mapping[str, ScoredAnswer], *, threshold: float) -> ScoreDrift:
    """Each current site's score histogram against its answer for the trained-on version."""
    references: dict[str, np.ndarray] = {}
    for answer in answers:
        if answer.scores is not None and trained_on.get(answer.site) == answer.dataset_version:
            references[answer.site] = answer.scores
    not_compared: dict[str, str] = {}
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for site, answer in sorted(current.items()):
        if answer.scores is None:
            not_compared[site] = "sent no score histogram (it holds no final model)"
        elif site not in references:
            not_compared[site] = ("released no score histogram for the dataset version it "
                                  "trained on")
        else:
            pairs[site] = (references[site], answer.scores)
    per_site = {site: _psi(ref, cur) for site, (ref, cur) in pairs.items()}
    pooled = None
    if pairs:
        pooled = _psi(np.sum([r for r, _ in pairs.values()], axis=0),
                      np.sum([c for _, c in pairs.values()], axis=0))
    return ScoreDrift(psi=pooled, per_site=per_site, threshold=threshold,
                      not_compared=not_compared)

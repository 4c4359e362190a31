"""A site's evaluation counts on its held-out split, and their fixed vector layout.

Each site turns the global model's scores on its held-out rows into counts: positives and
negatives per score bin (see :func:`common.metrics.score_histograms`) for all rows and per
sensitive group, plus the sums of per-row log loss and Brier terms and the row count. Counts
add up across sites, and :mod:`common.evaluation` derives every metric from the sums.

With encrypted evaluation the counts travel as one CKKS vector, summed by the coordinator
without decryption, so the vector's layout must be identical at every site: the group list
comes from the study plan (the declared categories of the sensitive column), never from the
data. Layout, in order: for each group of :func:`fixed_groups` (``""`` = all rows first),
``pos[bins]`` then ``neg[bins]``; then ``log_loss_sum``, ``brier_sum`` and ``n``. Rows whose
group is not a declared category count in the overall histogram and in :data:`OTHER_GROUP`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from common.metrics import DEFAULT_BINS, score_histograms
from common.plan import StudyPlan

#: Group of the rows whose sensitive value is not among the plan's declared categories.
OTHER_GROUP = "(other)"
#: Largest distance from a whole number a decrypted count may have (CKKS noise is ~1e-7).
COUNT_TOLERANCE = 1e-3
#: Scores are clipped this far from 0 and 1 in the log loss (no infinite terms).
_LOG_EPS = 1e-12
_TRAILER = ("log_loss_sum", "brier_sum", "n")

Histograms = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class HeldOutCounts:
    """Counts of one held-out split (or a sum of several): ``""`` holds all rows."""

    bins: int
    histograms: Histograms
    log_loss_sum: float
    brier_sum: float
    n: int


def declared_categories(plan: StudyPlan) -> list[str] | None:
    """The declared categories of the plan's sensitive column (a binary column's are "0" and
    "1"), or None when the data dictionary does not list them."""
    sensitive = plan.dataset.sensitive
    columns = getattr(plan.dataset, "columns", None)
    if sensitive is None or not columns or sensitive not in columns:
        return None
    column = columns[sensitive]
    if getattr(column, "type", None) == "binary":
        return ["0", "1"]
    categories = getattr(column, "categories", None)
    return None if categories is None else [str(c) for c in categories]


def fixed_groups(plan: StudyPlan) -> tuple[str, ...] | None:
    """Histogram groups known before any data is seen: ``("",)`` without a sensitive column,
    ``("", *categories, OTHER_GROUP)`` with declared categories, ``None`` when the plan names
    a sensitive column without categories (the groups would come from the data)."""
    if plan.dataset.sensitive is None:
        return ("",)
    categories = declared_categories(plan)
    if categories is None:
        return None
    if OTHER_GROUP in categories or "" in categories:
        raise TesseraError(ErrorCode.PLAN_INVALID,
                           f"study plan: dataset.columns.{plan.dataset.sensitive}: a category "
                           f"may not be empty or {OTHER_GROUP!r} (reserved)")
    return ("", *categories, OTHER_GROUP)


def require_fixed_groups(plan: StudyPlan) -> tuple[str, ...]:
    """The fixed groups, or a clear refusal of a plan whose encrypted counts have none."""
    groups = fixed_groups(plan)
    if groups is None:
        column = plan.dataset.sensitive
        raise TesseraError(
            ErrorCode.PLAN_INVALID,
            f"study plan: dataset.sensitive names {column!r} but the data dictionary lists no "
            f"categories for it; encrypted evaluation sums one vector per site, so every "
            f"group must be known up front: declare dataset.columns.{column}.categories "
            f"(or turn he.enabled off)",
        )
    return groups


def count_held_out(
    scores: np.ndarray, labels: np.ndarray, group_values: np.ndarray | None, *,
    groups: tuple[str, ...] | None, bins: int = DEFAULT_BINS,
) -> HeldOutCounts:
    """Counts of one held-out split.

    ``groups`` fixes the histogram groups (see :func:`fixed_groups`); ``None`` takes the
    groups present in ``group_values`` (plaintext counts of a plan without categories).
    """
    y = np.asarray(labels)
    values = None if group_values is None else np.asarray(group_values).astype(str)
    masks: dict[str, np.ndarray] = {"": np.ones(len(y), dtype=bool)}
    if groups is None:
        if values is not None:
            masks.update({g: values == g for g in sorted(set(values.tolist()))})
    elif len(groups) > 1:
        if values is None:
            raise TesseraError(ErrorCode.DATA_INVALID,
                               "held-out split has no sensitive column for the plan's groups")
        declared = [g for g in groups if g not in ("", OTHER_GROUP)]
        masks.update({g: values == g for g in declared})
        masks[OTHER_GROUP] = ~np.isin(values, declared)
    histograms = {g: score_histograms(scores[m], y[m], bins=bins) for g, m in masks.items()}
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    log_loss = -np.sum(y * np.log(s + _LOG_EPS) + (1 - y) * np.log(1 - s + _LOG_EPS))
    return HeldOutCounts(bins=bins, histograms=histograms, log_loss_sum=float(log_loss),
                         brier_sum=float(np.sum((s - y) ** 2)), n=len(y))


def vector_layout(groups: Sequence[str], *, bins: int = DEFAULT_BINS) -> list[TensorSlot]:
    """Slots of the counts vector: ``pos:<group>`` and ``neg:<group>``, then the sums."""
    slots: list[TensorSlot] = []
    for group in groups:
        for side in ("pos", "neg"):
            slots.append(TensorSlot(name=f"{side}:{group}", shape=(bins,),
                                    offset=len(slots) * bins, length=bins))
    base = len(slots) * bins
    slots += [TensorSlot(name=name, shape=(1,), offset=base + i, length=1)
              for i, name in enumerate(_TRAILER)]
    return slots


def vector_length(groups: Sequence[str], *, bins: int = DEFAULT_BINS) -> int:
    """Values in the counts vector."""
    return 2 * bins * len(groups) + len(_TRAILER)


def to_vector(counts: HeldOutCounts, groups: Sequence[str]) -> np.ndarray:
    """The counts as one float64 vector in the fixed layout."""
    if set(counts.histograms) != set(groups):
        raise TesseraError(ErrorCode.DATA_INVALID, "counts do not have the plan's groups")
    parts = [np.asarray(side, dtype=np.float64)
             for g in groups for side in counts.histograms[g]]
    parts.append(np.array([counts.log_loss_sum, counts.brier_sum, float(counts.n)]))
    return np.concatenate(parts)


def from_vector(vector: np.ndarray, groups: Sequence[str], *,
                bins: int = DEFAULT_BINS, signed: bool = False) -> HeldOutCounts:
    """Counts from a (decrypted, summed) vector; histogram counts and ``n`` are rounded to
    whole numbers, and a value further than :data:`COUNT_TOLERANCE` from one is refused, as
    is a negative count unless ``signed`` (noisy counts, before suppression)."""
    values = np.asarray(vector, dtype=np.float64)
    if values.shape != (vector_length(groups, bins=bins),) or not np.isfinite(values).all():
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "counts vector does not match its layout")
    whole = np.concatenate([values[: 2 * bins * len(groups)], values[-1:]])
    rounded = np.rint(whole)
    if np.abs(whole - rounded).max(initial=0.0) > COUNT_TOLERANCE or (
            not signed and (rounded < 0).any()):
        raise TesseraError(ErrorCode.BAD_ENVELOPE,
                           "decrypted counts are not whole (non-negative) numbers")
    counts = rounded.astype(np.int64)
    sides = counts[: 2 * bins * len(groups)].reshape(len(groups), 2, bins)
    histograms = {g: (sides[i, 0].copy(), sides[i, 1].copy()) for i, g in enumerate(groups)}
    return HeldOutCounts(bins=bins, histograms=histograms, log_loss_sum=float(values[-3]),
                         brier_sum=float(values[-2]), n=int(counts[-1]))


def _merge_runs(pos: np.ndarray, neg: np.ndarray,
                min_cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge consecutive bins of one segment until each cell holds at least ``min_cell`` rows
    (the remainder joins the last cell); a cell's rows sit at their mean bin."""
    out_pos, out_neg = np.zeros_like(pos), np.zeros_like(neg)
    cells: list[list[int]] = []  # [positives, negatives, sum of bin index x rows]
    p = q = weighted = 0
    for index in range(len(pos)):
        p, q = p + int(pos[index]), q + int(neg[index])
        weighted += index * (int(pos[index]) + int(neg[index]))
        if p + q >= min_cell:
            cells.append([p, q, weighted])
            p = q = weighted = 0
    if p + q:
        cells[-1][0] += p
        cells[-1][1] += q
        cells[-1][2] += weighted
    for p_cell, q_cell, w_cell in cells:
        where = round(w_cell / (p_cell + q_cell))
        out_pos[where] += p_cell
        out_neg[where] += q_cell
    return out_pos, out_neg


def _merge_group(pos: np.ndarray, neg: np.ndarray,
                 min_cell: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A group's histograms with every non-empty cell (a range of score bins) holding at
    least ``min_cell`` rows; None if the group has fewer rows than that.

    Scores below and at or above the 0.5 threshold are merged separately when each side has
    at least ``min_cell`` rows (or none), so accuracy, F1 and the fairness rates stay exact;
    otherwise the whole histogram is merged as one.
    """
    pos, neg = np.asarray(pos, dtype=np.int64), np.asarray(neg, dtype=np.int64)
    total = int(pos.sum() + neg.sum())
    if total == 0:
        return np.zeros_like(pos), np.zeros_like(neg)
    if total < min_cell:
        return None
    cut = pos.size // 2
    sides = [int(pos[:cut].sum() + neg[:cut].sum()), int(pos[cut:].sum() + neg[cut:].sum())]
    if any(0 < side < min_cell for side in sides):
        return _merge_runs(pos, neg, min_cell)
    out_pos, out_neg = np.zeros_like(pos), np.zeros_like(neg)
    for part, rows in ((slice(0, cut), sides[0]), (slice(cut, pos.size), sides[1])):
        if rows:
            out_pos[part], out_neg[part] = _merge_runs(pos[part], neg[part], min_cell)
    return out_pos, out_neg


def merge_small_cells(counts: HeldOutCounts, *, min_cell: int) -> HeldOutCounts:
    """Counts fit to share: every histogram cell (a range of score bins) holds zero or at
    least ``min_cell`` rows; within a cell the split by label is exact.

    Adjacent score bins are merged until each cell is large enough (its rows sit at their
    mean bin), separately on each side of the 0.5 threshold where possible; a group with
    fewer than ``min_cell`` rows is suppressed (left out). If the
    overall histogram cannot be formed, the counts are refused (PERMISSION_DENIED): the split
    is too small to share.
    """
    if min_cell < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "min_cell: must be at least 1")
    merged: Histograms = {}
    for group, (pos, neg) in counts.histograms.items():
        result = _merge_group(pos, neg, min_cell)
        if result is not None:
            merged[group] = result
        elif group == "":
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"the held-out rows cannot form cells of at least {min_cell} "
                               "rows: counts are not shared")
    return HeldOutCounts(bins=counts.bins, histograms=merged, log_loss_sum=counts.log_loss_sum,
                         brier_sum=counts.brier_sum, n=counts.n)

"""Held-out counts: groups fixed by the plan, the vector layout, and exact CKKS round trips."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ErrorCode, TesseraError
from common.eval_counts import (
    OTHER_GROUP,
    HeldOutCounts,
    count_held_out,
    fixed_groups,
    from_vector,
    merge_small_cells,
    require_fixed_groups,
    to_vector,
    vector_layout,
    vector_length,
)
from common.metrics import score_histograms
from common.plan import StudyPlan, bundled_plan_path, load_plan
from privacy.ckks import CkksParams, add_encrypted, decrypt_vector, encrypt_vector, generate_keys


def _diabetes(columns: dict | None) -> StudyPlan:
    raw = load_plan(bundled_plan_path("diabetes")).model_dump()
    raw["dataset"]["columns"] = columns
    return StudyPlan.model_validate(raw)


def _site(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.0, 1.0, n)
    labels = rng.integers(0, 2, n)
    groups = rng.choice(["1", "2", "3"], n)
    return scores, labels, groups


def test_plan_without_sensitive_column_has_only_the_overall_group() -> None:
    plan = load_plan(bundled_plan_path("breast_cancer"))
    assert fixed_groups(plan) == ("",)
    assert require_fixed_groups(plan) == ("",)


def test_declared_categories_fix_the_groups_and_add_other() -> None:
    plan = _diabetes({"sex": {"type": "category", "categories": ["1", "2"]}})
    assert fixed_groups(plan) == ("", "1", "2", OTHER_GROUP)


def test_binary_sensitive_column_has_groups_zero_and_one() -> None:
    plan = _diabetes({"sex": {"type": "binary"}})
    assert fixed_groups(plan) == ("", "0", "1", OTHER_GROUP)


def test_sensitive_column_without_categories_is_refused_for_encrypted_counts() -> None:
    plan = _diabetes(None)
    assert fixed_groups(plan) is None
    with pytest.raises(TesseraError) as err:
        require_fixed_groups(plan)
    assert err.value.code is ErrorCode.PLAN_INVALID
    assert "'sex'" in err.value.message and "categories" in err.value.message


def test_rows_of_undeclared_groups_count_overall_and_in_other() -> None:
    scores, labels, values = _site(1)
    counts = count_held_out(scores, labels, values, groups=("", "1", "2", OTHER_GROUP), bins=10)
    other = values == "3"
    assert other.any()
    assert np.array_equal(counts.histograms[OTHER_GROUP][0],
                          score_histograms(scores[other], labels[other], bins=10)[0])
    assert np.array_equal(counts.histograms[""][1],
                          score_histograms(scores, labels, bins=10)[1])
    assert "3" not in counts.histograms
    assert counts.n == len(labels)


def test_without_fixed_groups_the_observed_groups_are_used() -> None:
    scores, labels, values = _site(2)
    counts = count_held_out(scores, labels, values, groups=None, bins=10)
    assert sorted(counts.histograms) == ["", "1", "2", "3"]


def test_vector_layout_covers_every_value_once() -> None:
    groups = ("", "a", OTHER_GROUP)
    slots = vector_layout(groups, bins=7)
    assert sum(s.length for s in slots) == vector_length(groups, bins=7) == 2 * 7 * 3 + 3
    assert [s.name for s in slots[:2]] == ["pos:", "neg:"]
    assert slots[-1].name == "n" and slots[-1].offset == vector_length(groups, bins=7) - 1


def test_vector_round_trip_is_exact() -> None:
    groups = ("", "1", "2", OTHER_GROUP)
    scores, labels, values = _site(3)
    counts = count_held_out(scores, labels, values, groups=groups, bins=20)
    back = from_vector(to_vector(counts, groups), groups, bins=20)
    for g in groups:
        assert np.array_equal(back.histograms[g][0], counts.histograms[g][0])
        assert np.array_equal(back.histograms[g][1], counts.histograms[g][1])
    assert back.n == counts.n and back.log_loss_sum == counts.log_loss_sum


def test_non_whole_counts_are_refused() -> None:
    groups = ("",)
    vector = np.zeros(vector_length(groups, bins=4))
    vector[1] = 2.4
    with pytest.raises(TesseraError) as err:
        from_vector(vector, groups, bins=4)
    assert err.value.code is ErrorCode.BAD_ENVELOPE


def test_summed_encrypted_counts_decrypt_to_the_exact_plaintext_sum() -> None:
    """CKKS noise (~1e-9 here) must never change a rounded count."""
    groups = ("", "1", "2", OTHER_GROUP)
    keys = generate_keys(CkksParams())
    sites = [count_held_out(*_site(seed, n=400 + seed), groups=groups) for seed in range(4)]
    vectors = [to_vector(c, groups) for c in sites]
    summed = add_encrypted(keys.evaluation_context,
                           [encrypt_vector(keys.secret_context, v) for v in vectors])
    opened = from_vector(decrypt_vector(keys.secret_context, summed,
                                        length=vector_length(groups)), groups)
    for g in groups:
        assert np.array_equal(opened.histograms[g][0], sum(c.histograms[g][0] for c in sites))
        assert np.array_equal(opened.histograms[g][1], sum(c.histograms[g][1] for c in sites))
    assert opened.n == sum(c.n for c in sites)
    expected = sum(c.log_loss_sum for c in sites)
    assert abs(opened.log_loss_sum - expected) <= 1e-9 * expected
    expected = sum(c.brier_sum for c in sites)
    assert abs(opened.brier_sum - expected) <= 1e-9 * expected


def _counts(scores, labels, groups=None) -> HeldOutCounts:
    return count_held_out(np.asarray(scores), np.asarray(labels), groups, groups=None)


def test_merged_cells_hold_zero_or_the_minimum_and_keep_every_row() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(120) < 0.6).astype(int)
    scores = np.clip(np.where(y == 1, rng.normal(0.75, 0.15, 120),
                              rng.normal(0.3, 0.15, 120)), 0, 1)
    raw = _counts(scores, y)
    merged = merge_small_cells(raw, min_cell=10)
    pos, neg = merged.histograms[""]
    assert all(p + q == 0 or p + q >= 10 for p, q in zip(pos, neg, strict=True))
    assert pos.sum() == raw.histograms[""][0].sum() and neg.sum() == raw.histograms[""][1].sum()
    half = len(pos) // 2  # the threshold split is kept: accuracy is exact
    assert pos[half:].sum() == raw.histograms[""][0][half:].sum()
    assert neg[half:].sum() == raw.histograms[""][1][half:].sum()
    assert (merged.n, merged.log_loss_sum, merged.brier_sum) == (
        raw.n, raw.log_loss_sum, raw.brier_sum)


def test_small_groups_are_left_out_and_a_tiny_split_is_not_shared() -> None:
    y = np.array([0, 1] * 30)
    scores = np.linspace(0.01, 0.99, 60)
    groups = np.array(["a"] * 55 + ["b"] * 5)
    merged = merge_small_cells(count_held_out(scores, y, groups, groups=None), min_cell=10)
    assert set(merged.histograms) == {"", "a"}
    with pytest.raises(TesseraError) as tiny:
        merge_small_cells(_counts(scores[:6], y[:6]), min_cell=10)
    assert tiny.value.code is ErrorCode.PERMISSION_DENIED
    assert merge_small_cells(_counts(scores, y), min_cell=1).histograms[""][0].tolist() == \
        _counts(scores, y).histograms[""][0].tolist()

"""The keyed split: a patient's side follows from the site's secret and its id alone."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ErrorCode, TesseraError
from common.splits import held_out_draws, keyed_split

SECRET = b"s" * 32
IDS = np.array([f"P{i:05d}" for i in range(2000)])
LABELS = (np.arange(2000) % 3 == 0).astype(np.int64)


def test_draws_are_fixed_per_secret_dataset_and_patient_and_look_uniform() -> None:
    draws = held_out_draws(IDS, secret=SECRET, dataset="icu")
    assert np.array_equal(draws, held_out_draws(IDS, secret=SECRET, dataset="icu"))
    assert ((draws >= 0) & (draws < 1)).all()
    assert abs(draws.mean() - 0.5) < 0.03 and abs((draws < 0.2).mean() - 0.2) < 0.03
    assert not np.array_equal(draws, held_out_draws(IDS, secret=b"t" * 32, dataset="icu"))
    assert not np.array_equal(draws, held_out_draws(IDS, secret=SECRET, dataset="ward"))
    # A patient's draw does not depend on who else is in the table.
    assert held_out_draws(IDS[5:6], secret=SECRET, dataset="icu")[0] == draws[5]


def test_stratified_split_holds_out_each_labels_share_exactly() -> None:
    train, test = keyed_split(IDS, LABELS, secret=SECRET, dataset="icu", test_fraction=0.2)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(2000))
    assert np.array_equal(train, np.sort(train)) and np.array_equal(test, np.sort(test))
    for label in (0, 1):
        assert (LABELS[test] == label).sum() == round((LABELS == label).sum() * 0.2)
    # The held-out rows of each label are those with the smallest draws.
    draws = held_out_draws(IDS, secret=SECRET, dataset="icu")
    for label in (0, 1):
        held, kept = draws[test][LABELS[test] == label], draws[train][LABELS[train] == label]
        assert held.max() < kept.min()
    again = keyed_split(IDS, LABELS, secret=SECRET, dataset="icu", test_fraction=0.2)
    assert np.array_equal(again[1], test)
    other = keyed_split(IDS, LABELS, secret=b"t" * 32, dataset="icu", test_fraction=0.2)
    assert not np.array_equal(other[1], test)


def test_threshold_split_keeps_a_patients_side_whatever_else_is_in_the_table() -> None:
    _, test = keyed_split(IDS, LABELS, secret=SECRET, dataset="icu", test_fraction=0.2,
                          stratify=False)
    assert abs(len(test) / 2000 - 0.2) < 0.03
    held = set(IDS[test])
    subset = np.arange(0, 2000, 7)
    _, sub_test = keyed_split(IDS[subset], LABELS[subset], secret=SECRET, dataset="icu",
                              test_fraction=0.2, stratify=False)
    assert set(IDS[subset][sub_test]) == held & set(IDS[subset])


def test_a_smaller_fraction_holds_out_a_subset_of_a_larger_ones_rows() -> None:
    for stratify in (True, False):
        _, larger = keyed_split(IDS, LABELS, secret=SECRET, dataset="icu", test_fraction=0.2,
                                stratify=stratify)
        _, smaller = keyed_split(IDS, LABELS, secret=SECRET, dataset="icu",
                                 test_fraction=0.1, stratify=stratify)
        assert set(IDS[smaller]) < set(IDS[larger])


def test_each_label_with_two_rows_lands_on_both_sides() -> None:
    ids = np.array([f"Q{i}" for i in range(12)])
    for y in (np.array([1] * 10 + [0] * 2), np.array([0] * 11 + [1])):
        for fraction in (0.01, 0.99):
            for stratify in (True, False):
                train, test = keyed_split(ids, y, secret=SECRET, dataset="d",
                                          test_fraction=fraction, stratify=stratify)
                for label in np.unique(y):
                    if (y == label).sum() >= 2:
                        assert label in y[train] and label in y[test]


@pytest.mark.parametrize("kwargs", [
    {"test_fraction": 0.0}, {"test_fraction": 1.0}, {"secret": b"short"}, {"dataset": ""},
])
def test_bad_arguments_are_refused_by_name(kwargs: dict) -> None:
    args = {"secret": SECRET, "dataset": "icu", "test_fraction": 0.2, **kwargs}
    with pytest.raises(TesseraError) as info:
        keyed_split(IDS, LABELS, **args)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert next(iter(kwargs)) in info.value.message
    with pytest.raises(TesseraError, match="y"):
        keyed_split(IDS, LABELS[:5], secret=SECRET, dataset="icu", test_fraction=0.2)

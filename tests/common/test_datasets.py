"""Behaviour of bundled datasets, site CSV files, partitions and train/test splits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from common.datasets import (
    TableData,
    bundled_names,
    content_hash,
    csv_bytes,
    load_bundled,
    partition_indices,
    read_csv,
    read_csv_bytes,
    select,
    stratified_split,
    write_csv,
)
from common.errors import ErrorCode, TesseraError
from common.plan import DatasetSpec, bundled_plan_path, load_plan

SPEC = DatasetSpec(name="t", features=["age", "bmi"], label="y", sensitive="sex")
GOOD_CSV = "patient_id,age,bmi,sex,y\nA1,50,30.5,F,1\nA2,61,22.0,M,0\n"


def test_bundled_names_are_the_three_sklearn_datasets() -> None:
    assert bundled_names() == ["breast_cancer", "diabetes", "digits"]


def test_digits_are_8x8_scans_with_a_binary_odd_label() -> None:
    data = load_bundled("digits")
    assert data.X.shape == (1797, 64)
    assert data.features[0] == "pixel_0_0" and data.features[-1] == "pixel_7_7"
    assert data.X.min() == 0 and data.X.max() == 16
    assert set(np.unique(data.y)) == {0, 1}
    assert 0.45 < data.y.mean() < 0.55


def test_breast_cancer_matches_sklearn_with_snake_case_features() -> None:
    data = load_bundled("breast_cancer")
    reference = load_breast_cancer()
    assert data.X.shape == (569, 30)
    np.testing.assert_array_equal(data.X, reference.data)
    np.testing.assert_array_equal(data.y, reference.target)
    assert data.label == "benign"
    assert int(data.y.sum()) == 357
    assert data.features[:2] == ("mean_radius", "mean_texture")
    assert "worst_concave_points" in data.features
    assert (data.patient_ids[0], data.patient_ids[-1]) == ("P00001", "P00569")
    assert data.sensitive is None and data.groups is None


def test_diabetes_labels_progression_above_median_and_groups_by_sex() -> None:
    data = load_bundled("diabetes")
    reference = load_diabetes(scaled=False)
    assert data.X.shape == (442, 10)
    assert data.features == ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
    np.testing.assert_array_equal(data.y, (reference.target > 140.5).astype(np.int64))
    assert int(data.y.sum()) == 221
    assert data.sensitive == "sex"
    assert data.groups is not None
    assert sorted(set(data.groups.tolist())) == ["1", "2"]
    assert int((data.groups == "1").sum()) == int((reference.data[:, 1] == 1).sum())


def test_unknown_bundled_dataset_is_not_found() -> None:
    with pytest.raises(TesseraError) as caught:
        load_bundled("iris")
    assert caught.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes", "digits"])
def test_bundled_plan_selects_from_bundled_data(name: str) -> None:
    spec = load_plan(bundled_plan_path(name)).dataset
    data = select(load_bundled(name), spec)
    assert data.features == tuple(spec.features)
    assert data.X.shape[1] == len(spec.features)
    assert data.sensitive == spec.sensitive


def test_select_keeps_plan_order_and_derives_groups_from_feature_column() -> None:
    data = load_bundled("diabetes")
    spec = DatasetSpec(name="d", features=["s6", "age"], label="progression_high", sensitive="bp")
    chosen = select(data, spec)
    np.testing.assert_array_equal(chosen.X, data.X[:, [9, 0]])
    assert chosen.groups is not None
    assert chosen.groups[0] == str(int(data.X[0, 3]))


def test_select_names_missing_column() -> None:
    spec = DatasetSpec(name="d", features=["age", "height"], label="progression_high")
    with pytest.raises(TesseraError) as caught:
        select(load_bundled("diabetes"), spec)
    assert caught.value.code is ErrorCode.DATA_INVALID
    assert "'height'" in caught.value.message


def _check_partition(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    assert all(np.array_equal(part, np.sort(part)) for part in parts)


def test_iid_partition_is_disjoint_covering_balanced_and_stratified() -> None:
    y = load_bundled("breast_cancer").y
    parts = partition_indices(y, 3, seed=0)
    _check_partition(parts, len(y))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    positives = [int(y[part].sum()) for part in parts]
    assert max(positives) - min(positives) <= 1


def test_partition_is_deterministic_under_seed() -> None:
    y = load_bundled("breast_cancer").y
    for scheme in ("iid", "dirichlet"):
        first = partition_indices(y, 3, seed=4, scheme=scheme)
        again = partition_indices(y, 3, seed=4, scheme=scheme)
        other = partition_indices(y, 3, seed=5, scheme=scheme)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_partition_skews_labels_but_keeps_every_site_usable() -> None:
    y = load_bundled("breast_cancer").y
    parts = partition_indices(y, 4, seed=1, scheme="dirichlet", alpha=0.3, min_per_site=20)
    _check_partition(parts, len(y))
    assert all(len(part) >= 20 and set(y[part].tolist()) == {0, 1} for part in parts)
    skewed = np.std([y[part].mean() for part in parts])
    balanced = np.std([y[part].mean() for part in partition_indices(y, 4, seed=1)])
    assert skewed > 5 * balanced


def test_impossible_partition_is_refused() -> None:
    y = np.array([0, 1] * 30)
    with pytest.raises(TesseraError) as caught:
        partition_indices(y, 4, seed=0, min_per_site=20)
    assert "n_sites" in caught.value.message
    with pytest.raises(TesseraError):
        partition_indices(y, 2, seed=0, scheme="round_robin")


def test_csv_round_trip_is_exact_with_sensitive_outside_features(tmp_path: Path) -> None:
    spec = load_plan(bundled_plan_path("diabetes")).dataset
    data = select(load_bundled("diabetes"), spec)
    rows = np.arange(0, 442, 3)
    path = tmp_path / "site.csv"
    write_csv(path, data, rows)
    header = path.read_text().splitlines()[0]
    assert header == "patient_id,age,bmi,bp,s1,s2,s3,s4,s5,s6,sex,progression_high"
    back = read_csv(path, spec)
    expected = data.take(rows)
    np.testing.assert_array_equal(back.patient_ids, expected.patient_ids)
    np.testing.assert_array_equal(back.X, expected.X)
    np.testing.assert_array_equal(back.y, expected.y)
    np.testing.assert_array_equal(back.groups, expected.groups)
    assert path.read_bytes() == csv_bytes(data, rows)


def test_csv_round_trip_is_exact_for_non_integral_features() -> None:
    data = load_bundled("breast_cancer")
    spec = DatasetSpec(name="b", features=list(data.features), label="benign")
    back = read_csv_bytes(csv_bytes(data), spec, source_name="b.csv")
    np.testing.assert_array_equal(back.X, data.X)
    assert back.groups is None


def test_csv_keeps_plan_columns_in_plan_order_and_ignores_others() -> None:
    text = "y,extra,bmi,patient_id,sex,age\n1,x,30.5,A1,F,50\n0,y,22,A2,M,61\n\n"
    data = read_csv_bytes(text.encode(), SPEC, source_name="s.csv")
    np.testing.assert_array_equal(data.X, [[50.0, 30.5], [61.0, 22.0]])
    np.testing.assert_array_equal(data.y, [1, 0])
    assert data.groups is not None and data.groups.tolist() == ["F", "M"]
    assert data.features == ("age", "bmi")


def _csv_error(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    with pytest.raises(TesseraError) as caught:
        read_csv_bytes(raw, SPEC, source_name="site.csv")
    assert caught.value.code is ErrorCode.DATA_INVALID
    return caught.value.message


def test_non_numeric_cell_is_named_by_row_and_column_without_its_value() -> None:
    message = _csv_error(GOOD_CSV.replace("A2,61,", "A2,sixty-one,"))
    assert message == "site.csv: row 2, column 'age': not a number"
    assert "sixty" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD_CSV.replace(",30.5,", ",,"), "site.csv: row 1, column 'bmi': empty"),
        (GOOD_CSV.replace(",30.5,", ",nan,"), "site.csv: row 1, column 'bmi': not a finite"),
        (GOOD_CSV.replace("F,1", "F,2"), "site.csv: row 1, column 'y': must be 0 or 1"),
        (GOOD_CSV.replace("A2", "A1"), "site.csv: row 2, column 'patient_id': duplicate"),
        (GOOD_CSV.replace(",M,", ",,"), "site.csv: row 2, column 'sex': empty"),
        (GOOD_CSV.replace("A2,61,", "A2,"), "site.csv: row 2: 4 cells"),
        (GOOD_CSV.replace(",bmi", ",weight"), "site.csv: missing required column(s): 'bmi'"),
        ("patient_id,age,bmi,sex,y\n", "site.csv: no data rows"),
        ("", "site.csv: empty file"),
        (b"patient_id,age\n\xff\xfe", "site.csv: not UTF-8"),
    ],
)
def test_malformed_csv_is_rejected_with_location(text: str | bytes, expected: str) -> None:
    assert _csv_error(text).startswith(expected)


def test_row_1_is_the_first_row_after_the_header() -> None:
    """One rule for every data message: row 1 is the first data row; blank rows count."""
    assert _csv_error(GOOD_CSV.replace("A1,50,", "A1,fifty,")).startswith("site.csv: row 1,")
    blank_first = GOOD_CSV.replace("patient_id,age,bmi,sex,y\n", "patient_id,age,bmi,sex,y\n\n")
    assert _csv_error(blank_first.replace("A2,61,", "A2,x,")) == \
        "site.csv: row 3, column 'age': not a number"
    twice = GOOD_CSV.replace("patient_id,age,", "patient_id,age,age,", 1)
    assert _csv_error(twice).startswith("site.csv: header: column 'age'")


def test_read_csv_names_only_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ward.csv"
    path.write_text(GOOD_CSV.replace(",22.0,", ",abc,"))
    with pytest.raises(TesseraError) as caught:
        read_csv(path, SPEC)
    assert caught.value.message == "ward.csv: row 2, column 'bmi': not a number"


def test_content_hash_is_sha256_hex() -> None:
    assert content_hash(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert content_hash(GOOD_CSV.encode()) == hashlib.sha256(GOOD_CSV.encode()).hexdigest()


def test_stratified_split_is_sorted_disjoint_and_keeps_label_shares() -> None:
    y = load_bundled("breast_cancer").y
    train, test = stratified_split(y, test_fraction=0.2, seed=0)
    assert np.array_equal(train, np.sort(train)) and np.array_equal(test, np.sort(test))
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))
    assert len(test) == round(357 * 0.2) + round(212 * 0.2)
    assert int(y[test].sum()) == round(357 * 0.2)
    again, _ = stratified_split(y, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train, again)


def test_stratified_split_puts_rare_label_on_both_sides() -> None:
    y = np.array([0] * 40 + [1, 1])
    train, test = stratified_split(y, test_fraction=0.1, seed=3)
    assert set(y[train].tolist()) == {0, 1} and set(y[test].tolist()) == {0, 1}


def test_table_rejects_inconsistent_shapes() -> None:
    with pytest.raises(TesseraError):
        TableData(
            patient_ids=np.array(["P1", "P2"]),
            X=np.zeros((2, 3)),
            y=np.array([0, 1], dtype=np.int64),
            features=("a", "b"),
            label="y",
        )

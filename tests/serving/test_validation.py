"""Prediction rows: every problem names the row and field, never the value."""

from __future__ import annotations

import numpy as np
import pytest

from serving.validation import InvalidRequestError, rows_matrix

FEATURES = ["age", "bmi"]
SECRET = "patient-value-7734"


def test_valid_rows_become_the_matrix_in_feature_order() -> None:
    X = rows_matrix([{"bmi": 22.5, "age": 61, "note": "ignored"}, {"age": 1.0, "bmi": 2}],
                    FEATURES)
    np.testing.assert_array_equal(X, [[61.0, 22.5], [1.0, 2.0]])


def test_problems_name_row_and_field_without_the_value() -> None:
    rows = [{"age": 1, "bmi": 2}, {"age": SECRET}, "x", {"age": True, "bmi": float("inf")}]
    with pytest.raises(InvalidRequestError) as info:
        rows_matrix(rows, FEATURES)
    found = [p.to_json() for p in info.value.problems]
    assert [(p["row"], p["field"]) for p in found] == [
        (1, "age"), (1, "bmi"), (2, "*"), (3, "age"), (3, "bmi")]
    assert found[0]["message"] == "rows[1].age: must be a number"
    assert found[1]["problem"] == "is missing"
    assert found[4]["problem"] == "must be a finite number"
    assert SECRET not in repr(found)


@pytest.mark.parametrize(("rows", "problem"), [
    ([], "at least one row"), ({"age": 1}, "list"), ([{"age": 1, "bmi": 1}] * 3, "at most 2"),
])
def test_whole_body_problems(rows: object, problem: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        rows_matrix(rows, FEATURES, max_batch=2)
    assert problem in info.value.problems[0].problem
    assert info.value.problems[0].row is None

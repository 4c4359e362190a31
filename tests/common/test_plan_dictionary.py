"""The study plan's data dictionary: validation, hashing, TOML round trips, bundled plans."""

from __future__ import annotations

import numpy as np
import pytest

from common.datasets import load_bundled
from common.errors import ErrorCode, TesseraError
from common.plan import (
    ColumnSpec,
    bundled_plan_path,
    load_plan,
    parse_plan,
    plan_hash,
    plan_to_toml,
)
from tests.common.test_plan import MINIMAL

AGE = '\n[dataset.columns.a]\ntype = "integer"\nunit = "years"\nmin = 0\nmax = 120\n'


def test_a_dictionary_is_read_with_types_units_and_ranges() -> None:
    plan = parse_plan(MINIMAL + AGE + '\n[dataset.columns.y]\ntype = "binary"\n'
                      'description = "1 = event"\n')
    assert plan.dataset.columns == {
        "a": ColumnSpec(type="integer", unit="years", min=0.0, max=120.0),
        "y": ColumnSpec(type="binary", description="1 = event"),
    }


def test_a_plan_without_dictionary_keeps_its_hash_and_an_empty_one_too() -> None:
    plain = parse_plan(MINIMAL)
    assert plain.dataset.columns is None
    assert plan_hash(parse_plan(MINIMAL + "\n[dataset.columns]\n")) == plan_hash(plain)
    assert plan_hash(parse_plan(MINIMAL + AGE)) != plan_hash(plain)


def test_every_dictionary_field_changes_the_hash() -> None:
    base = plan_hash(parse_plan(MINIMAL + AGE))
    for edited in (AGE.replace("120", "121"), AGE.replace("years", "months"),
                   AGE.replace('"integer"', '"number"'), AGE + 'description = "x"\n'):
        assert plan_hash(parse_plan(MINIMAL + edited)) != base


def test_a_dictionary_round_trips_through_toml() -> None:
    text = MINIMAL.replace('label = "y"', 'label = "y"\nsensitive = "g"') + AGE + (
        '\n[dataset.columns.g]\ntype = "category"\ncategories = ["F", "M"]\n')
    plan = parse_plan(text)
    again = parse_plan(plan_to_toml(plan))
    assert again == plan
    assert plan_hash(again) == plan_hash(plan)


@pytest.mark.parametrize(("table", "where", "fragment"), [
    ('[dataset.columns.zz]\ntype = "number"', "dataset", "columns.zz: not a feature"),
    ('[dataset.columns.y]\ntype = "number"', "dataset", "label column must be of type binary"),
    ('[dataset.columns.a]\ntype = "number"\nmin = 5\nmax = 1', "dataset.columns.a",
     "min must not be greater than max"),
    ('[dataset.columns.a]\ntype = "binary"\nmax = 1', "dataset.columns.a",
     "min/max apply only to number and integer"),
    ('[dataset.columns.a]\ntype = "category"', "dataset.columns.a",
     "needs a non-empty categories list"),
    ('[dataset.columns.a]\ntype = "number"\ncategories = ["1"]', "dataset.columns.a",
     "categories apply only to category columns"),
    ('[dataset.columns.a]\ntype = "category"\ncategories = ["low", "high"]', "dataset",
     "a feature's categories must be numbers"),
    ('[dataset.columns.a]\ntype = "category"\ncategories = ["1", "1"]', "dataset.columns.a",
     "distinct"),
    ('[dataset.columns.a]\ntype = "text"', "dataset.columns.a.type", "Input should be"),
    ('[dataset.columns.a]\ntype = "number"\nmin = "0"', "dataset.columns.a.min",
     "valid number"),
    ('[dataset.columns.a]\ntype = "number"\nrange = 3', "dataset.columns.a.range",
     "Extra inputs"),
])
def test_an_inconsistent_dictionary_is_refused_naming_the_column(
        table: str, where: str, fragment: str) -> None:
    with pytest.raises(TesseraError) as caught:
        parse_plan(MINIMAL + "\n" + table + "\n")
    assert caught.value.code is ErrorCode.PLAN_INVALID
    assert f"study plan: {where}" in caught.value.message
    assert fragment in caught.value.message


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes", "digits"])
def test_bundled_plans_document_every_column(name: str) -> None:
    spec = load_plan(bundled_plan_path(name)).dataset
    assert spec.columns is not None
    expected = {*spec.features, spec.label, *([spec.sensitive] if spec.sensitive else [])}
    assert set(spec.columns) == expected
    assert spec.columns[spec.label].type == "binary"
    for column in spec.columns.values():
        assert column.description


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
def test_bundled_data_lies_within_the_dictionary_with_margin(name: str) -> None:
    spec = load_plan(bundled_plan_path(name)).dataset
    data = load_bundled(name)
    assert spec.columns is not None
    for feature, column in spec.columns.items():
        if feature not in data.features:
            continue
        values = data.X[:, data.features.index(feature)]
        if column.type == "integer":
            assert np.all(values == np.round(values)), feature
        if column.type == "category":
            assert {f"{v:g}" for v in values} <= set(column.categories or []), feature
        if column.min is not None and column.max is not None:
            # Plausible bounds: room beyond the data (a twentieth of its span at least), but
            # tight, since the DP statistics normalise with them (twice the span at most).
            span = values.max() - values.min()
            assert values.max() <= column.max - 0.05 * span, feature
            assert values.min() >= column.min + 0.05 * span or column.min == 0, feature
            assert column.max - column.min <= 2 * span, feature


def test_digits_dictionary_is_the_scanners_ink_scale() -> None:
    # Pixels are ink on a fixed 0-16 scale (no margin beyond it exists, and border pixels are
    # always blank): the dictionary states the scale itself, and the data stays within it.
    spec = load_plan(bundled_plan_path("digits")).dataset
    data = load_bundled("digits")
    assert spec.columns is not None
    for feature in spec.features:
        column = spec.columns[feature]
        assert (column.type, column.min, column.max) == ("number", 0, 16)
        values = data.X[:, data.features.index(feature)]
        assert values.min() >= 0 and values.max() <= 16

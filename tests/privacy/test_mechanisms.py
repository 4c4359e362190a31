"""Behaviour of the ledger's mechanisms: validation, their JSON form and history compaction."""

from __future__ import annotations

import json
import math

import pytest

from common.errors import ErrorCode, TesseraError
from privacy.mechanisms import DpStep, GaussianRelease, compact_history, mechanism_from_json


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"noise_multiplier": 0.0, "sample_rate": 0.1, "steps": 1}, "noise_multiplier"),
        ({"noise_multiplier": math.nan, "sample_rate": 0.1, "steps": 1}, "noise_multiplier"),
        ({"noise_multiplier": True, "sample_rate": 0.1, "steps": 1}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.0, "steps": 1}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5, "steps": 1}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 0}, "steps"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 2.0}, "steps"),
    ],
)
def test_dp_step_rejects_invalid_values_naming_the_parameter(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(TesseraError) as info:
        DpStep(**kwargs)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith(name)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"noise_multiplier": -1.0, "count": 1}, "noise_multiplier"),
        ({"noise_multiplier": math.inf, "count": 1}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "count": 0}, "count"),
    ],
)
def test_gaussian_release_rejects_invalid_values_naming_the_parameter(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(TesseraError) as info:
        GaussianRelease(**kwargs)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith(name)


def test_mechanisms_round_trip_through_json_with_their_names() -> None:
    step, release = DpStep(1.25, 32 / 152, 24), GaussianRelease(12.5, 3)

    texts = [json.dumps(item.to_json()) for item in (step, release)]

    assert json.loads(texts[0]) == {
        "mechanism": "poisson_subsampled_gaussian",
        "noise_multiplier": 1.25,
        "sample_rate": 32 / 152,
        "steps": 24,
    }
    assert json.loads(texts[1]) == {"mechanism": "gaussian", "noise_multiplier": 12.5, "count": 3}
    assert [mechanism_from_json(json.loads(text)) for text in texts] == [step, release]


@pytest.mark.parametrize(
    "data",
    [
        {"mechanism": "laplace", "noise_multiplier": 1.0},
        {"noise_multiplier": 1.0, "count": 1},
        {"mechanism": "gaussian", "noise_multiplier": 1.0},
        {"mechanism": "gaussian", "noise_multiplier": 1.0, "count": 1, "sample_rate": 0.5},
        {"mechanism": "gaussian", "noise_multiplier": 0.0, "count": 1},
        ["gaussian", 1.0, 1],
    ],
)
def test_malformed_mechanism_json_is_refused(data: object) -> None:
    with pytest.raises(TesseraError) as info:
        mechanism_from_json(data)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID


def test_compaction_merges_identical_mechanisms_whatever_their_order() -> None:
    a, b = DpStep(2.0, 0.1, 10), DpStep(2.0, 0.2, 5)
    stats = GaussianRelease(8.0, 2)

    assert compact_history([a, stats, b, a, stats]) == (
        DpStep(2.0, 0.1, 20),
        DpStep(2.0, 0.2, 5),
        GaussianRelease(8.0, 4),
    )
    assert compact_history([b, a, stats, stats, a]) == compact_history([a, stats, b, a, stats])
    assert compact_history([]) == ()


def test_compaction_names_the_entry_that_is_not_a_mechanism() -> None:
    with pytest.raises(TesseraError, match=r"history\[1\]"):
        compact_history([DpStep(1.0, 0.1, 1), {"mechanism": "gaussian"}])  # type: ignore[list-item]

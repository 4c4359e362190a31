"""Behaviour of the model zoo and the flat-vector conversion of models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opacus import GradSampleModule

from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import ModelSpec

LOGREG = ModelSpec(kind="logreg")
MLP = ModelSpec(kind="mlp", hidden=8, groups=2)


def test_logreg_init_equals_torch_default_linear_init_for_the_seed() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = torch.nn.Linear(30, 1)
    model = build_model(LOGREG, n_features=30, seed=11)
    vector, _ = model_to_vector(model)
    expected = torch.cat([reference.weight.detach().reshape(-1), reference.bias.detach()])
    np.testing.assert_array_equal(vector, expected.numpy().astype(np.float64))


def test_build_model_leaves_global_rng_untouched() -> None:
    before = torch.get_rng_state()
    build_model(MLP, n_features=5, seed=3)
    assert torch.equal(torch.get_rng_state(), before)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    first, _ = model_to_vector(build_model(MLP, n_features=5, seed=3))
    again, _ = model_to_vector(build_model(MLP, n_features=5, seed=3))
    other, _ = model_to_vector(build_model(MLP, n_features=5, seed=4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("spec", [LOGREG, MLP])
@pytest.mark.parametrize("rows", [1, 7])
def test_forward_returns_one_logit_per_row(spec: ModelSpec, rows: int) -> None:
    model = build_model(spec, n_features=5, seed=0)
    assert model(torch.zeros(rows, 5)).shape == (rows,)


def test_mlp_uses_group_norm_and_never_batch_norm() -> None:
    model = build_model(ModelSpec(kind="mlp", hidden=16, groups=4), n_features=5, seed=0)
    kinds = [type(module) for module in model.modules()]
    assert torch.nn.GroupNorm in kinds
    assert not any(issubclass(kind, torch.nn.modules.batchnorm._BatchNorm) for kind in kinds)


def test_mlp_forward_matches_hand_computation() -> None:
    model = build_model(MLP, n_features=3, seed=5)
    weights = dict(model.state_dict())
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    hidden = x @ weights["fc1.weight"].T + weights["fc1.bias"]
    hidden = F.group_norm(hidden, 2, weights["norm.weight"], weights["norm.bias"])
    expected = (torch.relu(hidden) @ weights["fc2.weight"].T + weights["fc2.bias"]).reshape(-1)
    torch.testing.assert_close(model(x), expected)


def test_mlp_layout_is_state_dict_order_with_offsets() -> None:
    _, layout = model_to_vector(build_model(MLP, n_features=3, seed=0))
    assert layout == [
        TensorSlot("fc1.weight", (8, 3), 0, 24),
        TensorSlot("fc1.bias", (8,), 24, 8),
        TensorSlot("norm.weight", (8,), 32, 8),
        TensorSlot("norm.bias", (8,), 40, 8),
        TensorSlot("fc2.weight", (1, 8), 48, 8),
        TensorSlot("fc2.bias", (1,), 56, 1),
    ]


def test_vector_round_trip_restores_another_models_weights() -> None:
    source = build_model(MLP, n_features=4, seed=1)
    target = build_model(MLP, n_features=4, seed=2)
    vector, layout = model_to_vector(source)
    assert vector.dtype == np.float64
    vector_to_model(target, vector, layout)
    np.testing.assert_array_equal(model_to_vector(target)[0], vector)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(target(x), source(x))


def test_opacus_wrapped_model_uses_plain_tensor_names() -> None:
    plain = build_model(MLP, n_features=4, seed=1)
    wrapped = GradSampleModule(build_model(MLP, n_features=4, seed=2))
    vector, layout = model_to_vector(plain)
    assert [slot.name for slot in model_to_vector(wrapped)[1]] == [slot.name for slot in layout]
    vector_to_model(wrapped, vector, layout)
    np.testing.assert_array_equal(model_to_vector(wrapped)[0], vector)


def _rejection(model: torch.nn.Module, vector: np.ndarray, layout: list[TensorSlot]) -> str:
    with pytest.raises(TesseraError) as caught:
        vector_to_model(model, vector, layout)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    return caught.value.message


def test_vector_of_wrong_length_is_rejected() -> None:
    model = build_model(LOGREG, n_features=4, seed=0)
    vector, layout = model_to_vector(model)
    assert "5 values" in _rejection(model, vector, layout[:1])


def test_layout_of_another_shape_is_rejected_naming_the_tensor() -> None:
    model = build_model(LOGREG, n_features=4, seed=0)
    vector, layout = model_to_vector(build_model(LOGREG, n_features=5, seed=0))
    assert "'linear.weight'" in _rejection(model, vector, layout)


def test_layout_with_other_tensor_names_is_rejected() -> None:
    model = build_model(LOGREG, n_features=4, seed=0)
    vector, layout = model_to_vector(model)
    renamed = [TensorSlot("other", s.shape, s.offset, s.length) for s in layout]
    assert "'linear.weight'" in _rejection(model, vector, renamed)


def test_non_finite_vector_is_rejected_and_model_untouched() -> None:
    model = build_model(MLP, n_features=4, seed=0)
    vector, layout = model_to_vector(model)
    poisoned = vector.copy()
    poisoned[-1] = np.nan
    assert "'fc2.bias'" in _rejection(model, poisoned, layout)
    np.testing.assert_array_equal(model_to_vector(model)[0], vector)


def test_predict_scores_are_float64_sigmoid_of_logits_in_eval_mode() -> None:
    model = build_model(LOGREG, n_features=2, seed=0)
    vector_to_model(model, np.array([2.0, -1.0, 0.5]), model_to_vector(model)[1])
    X = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, -2.0]])
    model.train()
    scores = predict_scores(model, X)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.array([0.5, 1.5, 8.5]))), rtol=1e-6)
    assert model.training


def test_build_model_rejects_no_features() -> None:
    with pytest.raises(TesseraError) as caught:
        build_model(LOGREG, n_features=0, seed=0)
    assert "n_features" in caught.value.message


CNN = ModelSpec(kind="cnn", hidden=16, groups=4)


def test_cnn_reads_rows_as_square_images_with_group_norm() -> None:
    model = build_model(CNN, n_features=64, seed=0)
    assert model(torch.zeros(5, 64)).shape == (5,)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 2 and not any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # 16 3x3 filters, 32 3x3x16 filters, two GroupNorms, 32*4*4 -> 16 -> 1.
    assert model_to_vector(model)[0].size == 160 + 4640 + 32 + 64 + 8208 + 17
    # Each example is its own image: a batch gives the logits of its examples one by one.
    x = torch.randn(3, 64)
    alone = torch.stack([model(x[i : i + 1])[0] for i in range(3)])
    torch.testing.assert_close(model(x), alone)


def test_cnn_initialisation_depends_only_on_the_seed() -> None:
    first = model_to_vector(build_model(CNN, n_features=64, seed=3))[0]
    again = model_to_vector(build_model(CNN, n_features=64, seed=3))[0]
    other = model_to_vector(build_model(CNN, n_features=64, seed=4))[0]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0


def test_cnn_refuses_features_that_are_not_a_square_image() -> None:
    with pytest.raises(TesseraError) as info:
        build_model(CNN, n_features=30, seed=0)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert "n_features" in info.value.message


def test_cnn_groups_must_divide_its_channels() -> None:
    with pytest.raises(ValueError, match="must divide 16"):
        ModelSpec(kind="cnn", hidden=16, groups=3)

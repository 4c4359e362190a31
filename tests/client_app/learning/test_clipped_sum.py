"""The clipped sum computed from the gradients' factors equals clipping and summing the
per-example gradients (themselves equal to Opacus's per-sample gradients), for logistic
regression and the MLP, with and without the clip binding, and for an empty batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client_app.learning.clipped_sum import clipped_gradient_sum, has_closed_form
from client_app.learning.fast_dp import clipped_sum
from client_app.learning.per_example import per_example_gradients
from common.models import build_model
from common.plan import ModelSpec

FEATURES = 11


def _model(kind: str) -> torch.nn.Module:
    spec = ModelSpec(kind="mlp", hidden=12, groups=3) if kind == "mlp" else ModelSpec(kind=kind)
    return build_model(spec, n_features=FEATURES, seed=6)


def _batch(n: int, *, scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.normal(size=(n, FEATURES)) * scale, dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 2, size=n), dtype=torch.float32)
    return x, y


def _reference(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    grads, losses = per_example_gradients(model, x, y)
    return torch.cat([s.reshape(-1) for s in clipped_sum(grads, max_grad_norm=clip)]), losses


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
@pytest.mark.parametrize("scale, clip", [(0.3, 100.0), (3.0, 0.05), (1.0, 0.5)])
def test_factored_clipped_sum_equals_clipping_the_per_example_gradients(
    kind: str, scale: float, clip: float
) -> None:
    model = _model(kind)
    x, y = _batch(200, scale=scale)
    grads, _ = per_example_gradients(model, x, y)
    norms = torch.cat([g.reshape(200, -1) for g in grads], dim=1).norm(dim=1)

    summed, losses = clipped_gradient_sum(model, x, y, max_grad_norm=clip)

    expected, expected_losses = _reference(model, x, y, clip)
    assert summed.shape == (sum(p.numel() for p in model.parameters()),)
    torch.testing.assert_close(summed, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses, expected_losses)
    assert float(summed.abs().max()) > 1e-2  # something to compare
    share_clipped = float((norms > clip).float().mean())
    if clip == 100.0:
        assert share_clipped == 0.0  # the clip never binds: a plain sum
    else:
        assert share_clipped > 0.2  # the clip binds for many examples


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_one_example_is_clipped_to_exactly_the_norm(kind: str) -> None:
    model = _model(kind)
    x, y = _batch(1, scale=40.0, seed=3)

    summed, _ = clipped_gradient_sum(model, x, y, max_grad_norm=0.1)

    assert float(summed.norm()) == pytest.approx(0.1, rel=1e-4)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_an_empty_batch_sums_to_zeros(kind: str) -> None:
    model = _model(kind)
    x, y = _batch(0, scale=1.0)

    summed, losses = clipped_gradient_sum(model, x, y, max_grad_norm=1.0)

    assert summed.shape == (sum(p.numel() for p in model.parameters()),)
    assert float(summed.abs().sum()) == 0.0 and losses.shape == (0,)


def test_only_the_closed_form_models_with_every_parameter_trainable_qualify() -> None:
    assert has_closed_form(_model("logreg")) and has_closed_form(_model("mlp"))
    assert not has_closed_form(build_model(ModelSpec(kind="cnn", hidden=8, groups=2),
                                           n_features=9, seed=0))
    frozen = _model("mlp")
    frozen.fc1.bias.requires_grad_(False)
    assert not has_closed_form(frozen)

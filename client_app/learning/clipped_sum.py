"""A batch's sum of clipped per-example gradients, without forming the per-example gradients.

This module owns DP-SGD's clipping for the models whose per-example gradients are products
of a few per-example factors (:class:`common.models.LogisticRegression` and the closed-form
:class:`common.models.MLP`, see :mod:`client_app.learning.per_example`). A linear layer's
per-example weight gradient is the outer product ``g_i a_i^T`` of its output gradient and
its input, so

- its squared norm is ``|g_i|^2 |a_i|^2``: each example's norm over all parameters comes from
  a few row norms of ``(B, width)`` factors, never from the ``(B, parameters)`` matrix;
- the clipped sum ``sum_i c_i g_i a_i^T``, with Opacus's factor
  ``c_i = min(1, max_grad_norm / (norm_i + 1e-6))``, is one matrix product ``(c * g)^T a``.

The result is what clipping and summing :func:`per_example_gradients` gives (the same
formula; float rounding differs), as one flat vector in ``model.parameters()`` order, at
the cost of about one forward and backward pass of the batch. This is the "ghost clipping"
of Goodfellow (2015) and Li et al. (2022), written out for these two models.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from client_app.learning.per_example import (
    check_logits,
    closed_form_mlp,
    losses_of,
    mlp_backward,
)
from common.models import MLP, LogisticRegression

#: Added to each example's norm before dividing, as Opacus does.
NORM_EPSILON = 1e-6


def has_closed_form(model: nn.Module) -> bool:
    """Whether :func:`clipped_gradient_sum` handles ``model`` (every parameter trainable)."""
    if not all(p.requires_grad for p in model.parameters()):
        return False
    return type(model) is LogisticRegression or closed_form_mlp(model)


def clipped_gradient_sum(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, *, max_grad_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat clipped sum of the batch's per-example gradients, and the losses ``(B,)``.

    ``model`` must satisfy :func:`has_closed_form`. An empty batch sums to zeros.
    """
    with torch.no_grad():
        if type(model) is LogisticRegression:
            return _logistic(model, xb, yb, max_grad_norm=max_grad_norm)
        if isinstance(model, MLP):
            return _mlp(model, xb, yb, max_grad_norm=max_grad_norm)
    raise TypeError(f"no closed-form clipped sum for {type(model).__name__}")


def _factor(squared_norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    return (max_grad_norm / (squared_norms.sqrt() + NORM_EPSILON)).clamp(max=1.0)


def _logistic(
    model: LogisticRegression, xb: torch.Tensor, yb: torch.Tensor, *, max_grad_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    layer = model.linear
    logits = F.linear(xb, layer.weight, layer.bias).reshape(-1)
    check_logits(logits, yb)
    residual = torch.sigmoid(logits) - yb  # weight gradient r_i x_i, bias gradient r_i
    squared = residual * residual * ((xb * xb).sum(dim=1) + 1.0)
    scaled = _factor(squared, max_grad_norm) * residual
    weight = scaled @ xb  # (F,)
    return torch.cat([weight, scaled.sum().reshape(1)]), losses_of(logits, yb)


def _mlp(
    model: MLP, xb: torch.Tensor, yb: torch.Tensor, *, max_grad_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    back = mlp_backward(model, xb, yb)
    g_hidden, g_scaled, g_logits = back.g_hidden, back.g_scaled, back.g_logits
    g_norm_weight = g_scaled * back.standard
    squared = (
        _row_sums(g_hidden * g_hidden) * (_row_sums(xb * xb) + 1.0)  # fc1 weight and bias
        + _row_sums(g_norm_weight * g_norm_weight + g_scaled * g_scaled)  # GroupNorm's
        + g_logits * g_logits * (_row_sums(back.active * back.active) + 1.0)  # fc2's
    )
    factor = _factor(squared, max_grad_norm)
    scaled_logits = factor * g_logits
    flat = torch.cat([  # in MLP_PARAMETERS order, the order of model.parameters()
        ((factor[:, None] * g_hidden).T @ xb).reshape(-1),  # fc1.weight
        factor @ g_hidden,  # fc1.bias
        factor @ g_norm_weight,  # norm.weight
        factor @ g_scaled,  # norm.bias
        scaled_logits @ back.active,  # fc2.weight
        scaled_logits.sum().reshape(1),  # fc2.bias
    ])
    return flat, losses_of(back.logits, yb)


def _row_sums(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix.sum(dim=1)`` as a matrix-vector product (cheaper on a few hundred rows)."""
    return matrix @ _ones(matrix.shape[1], matrix.dtype, matrix.device)


@functools.lru_cache(maxsize=32)
def _ones(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.ones(size, dtype=dtype, device=device)

"""DP-SGD without Opacus hooks: per-example gradients computed directly, Opacus's semantics.

This module owns the fast DP-SGD loop. Each step does what Opacus's ``DPOptimizer`` does
with ``loss_reduction="mean"``, in the same order and with the same randomness:

1. per-example gradients of the batch (:func:`client_app.learning.per_example.
   per_example_gradients`), one tensor per parameter with a leading batch axis;
2. each example's gradient, over all parameters, scaled by
   ``min(1, max_grad_norm / (norm + 1e-6))`` and summed over the batch (an empty Poisson
   batch sums to zeros). For logistic regression and the MLP, steps 1 and 2 are one:
   :func:`client_app.learning.clipped_sum.clipped_gradient_sum` gets the norms and the
   clipped sum from the gradients' factors without forming the per-example gradients;
3. the auditing hook's extra gradients and the Gaussian noise added (one draw for all
   parameters in their order, the draw :func:`client_app.learning.dp_sgd.noised_sum` makes
   for the Opacus engine);
4. division by the expected batch size and one plain SGD step (``p += -lr * grad``, as
   ``torch.optim.SGD``).

The clipped sum, noise and step work on one flat vector of all parameters, so the per-step
cost is a handful of tensor operations whatever the number of parameter tensors.

Given the same key, the batches (:func:`client_app.learning.dp_sgd.poisson_batches`) and the
noise are the Opacus engine's to the bit; the gradients agree to float rounding.
"""

from __future__ import annotations

import torch

from client_app.learning.clipped_sum import (
    NORM_EPSILON,
    clipped_gradient_sum,
    has_closed_form,
)
from client_app.learning.dp_sgd import ExtraGradients, extra_for_step, poisson_batches
from client_app.learning.per_example import per_example_gradients
from privacy.secure_noise import SecureGaussian, SecurePoissonSampler


def clipped_sum(grads: list[torch.Tensor], *, max_grad_norm: float) -> list[torch.Tensor]:
    """Sum over the batch of each example's gradient clipped to ``max_grad_norm`` (L2, joint)."""
    flat = _clipped_flat(grads, max_grad_norm=max_grad_norm)
    chunks = flat.split([_numel(g) for g in grads])
    return [chunk.view(g.shape[1:]) for chunk, g in zip(chunks, grads, strict=True)]


def _numel(grad: torch.Tensor) -> int:
    size = 1
    for dim in grad.shape[1:]:
        size *= int(dim)
    return size


def _clipped_flat(grads: list[torch.Tensor], *, max_grad_norm: float) -> torch.Tensor:
    """:func:`clipped_sum` as one flat vector, parameters in order."""
    batch = int(grads[0].shape[0])
    if batch == 0:
        return torch.zeros(sum(_numel(g) for g in grads), dtype=grads[0].dtype,
                           device=grads[0].device)
    flat = torch.cat([g.reshape(batch, -1) for g in grads], dim=1)  # (B, parameters)
    factor = (max_grad_norm / (flat.norm(2, dim=1) + NORM_EPSILON)).clamp(max=1.0)
    return factor @ flat


def train_dp_fast(
    model: torch.nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    sampler: SecurePoissonSampler,
    steps: int,
    learning_rate: float,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: int,
    noise: SecureGaussian,
    extra_gradients: ExtraGradients | None,
) -> tuple[int, float, int]:
    """``steps`` DP-SGD steps in place on ``model``: (steps taken, loss sum, examples seen)."""
    params: list[torch.Tensor] = list(model.parameters())
    sizes = [p.numel() for p in params]
    total = sum(sizes)
    std = float(noise_multiplier * max_grad_norm)
    closed = has_closed_form(model)
    taken, examples = 0, 0
    loss_sums: list[torch.Tensor] = []
    for index in poisson_batches(sampler, steps=steps, device=features.device):
        xb, yb = features.index_select(0, index), labels.index_select(0, index)
        if closed:
            summed, losses = clipped_gradient_sum(model, xb, yb, max_grad_norm=max_grad_norm)
        else:
            grads, losses = per_example_gradients(model, xb, yb)
            summed = _clipped_flat(grads, max_grad_norm=max_grad_norm)
        if extra_gradients is not None:
            extras = extra_for_step(extra_gradients, taken, params)
            if any(e is not None for e in extras):
                summed = summed + torch.cat([
                    torch.zeros(size, dtype=summed.dtype, device=summed.device) if e is None
                    else e.reshape(-1) for e, size in zip(extras, sizes, strict=True)])
        # The same single draw as the Opacus engine's, in parameter order, cast to the
        # parameters' dtype before it is added (as noised_sum does).
        draw = torch.from_numpy(noise.noise(total, std=std))
        step = (summed + draw.to(dtype=summed.dtype, device=summed.device)) / expected_batch_size
        with torch.no_grad():  # plain SGD, as torch.optim.SGD: p += -lr * grad
            torch._foreach_add_(params, [chunk.view_as(p) for p, chunk in
                                         zip(params, step.split(sizes), strict=True)],
                                alpha=-learning_rate)
        taken += 1
        if len(xb):  # an empty Poisson batch still takes a (pure-noise) step
            loss_sums.append(losses.sum())
            examples += len(xb)
    loss_sum = float(torch.stack(loss_sums).to(torch.float64).sum()) if loss_sums else 0.0
    return taken, loss_sum, examples

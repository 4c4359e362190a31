"""DP-SGD without Opacus hooks: per-example gradients computed directly, Opacus's semantics.

This module owns the fast DP-SGD loop. Each step does what Opacus's ``DPOptimizer`` does
with ``loss_reduction="mean"``, in the same order and with the same randomness:

1. per-example gradients of the batch (:func:`client_app.learning.per_example.
   per_example_gradients`), one tensor per parameter with a leading batch axis;
2. each example's gradient, over all parameters, scaled by
   ``min(1, max_grad_norm / (norm + 1e-6))`` and summed over the batch (an empty Poisson
   batch sums to zeros);
3. the auditing hook's extra gradients and the Gaussian noise added
   (:func:`client_app.learning.dp_sgd.noised_sum`, the draw the Opacus engine makes);
4. division by the expected batch size and one plain SGD step.

Given the same key, the batches (:func:`client_app.learning.dp_sgd.poisson_batches`) and the
noise are the Opacus engine's to the bit; the gradients agree to float rounding.
"""

from __future__ import annotations

import torch

from client_app.learning.dp_sgd import (
    ExtraGradients,
    extra_for_step,
    noised_sum,
    poisson_batches,
)
from client_app.learning.per_example import per_example_gradients
from privacy.secure_noise import SecureGaussian, SecurePoissonSampler

#: Added to each example's norm before dividing, as Opacus does.
_NORM_EPSILON = 1e-6


def clipped_sum(grads: list[torch.Tensor], *, max_grad_norm: float) -> list[torch.Tensor]:
    """Sum over the batch of each example's gradient clipped to ``max_grad_norm`` (L2, joint)."""
    batch = int(grads[0].shape[0])
    if batch == 0:
        return [torch.zeros(g.shape[1:], dtype=g.dtype, device=g.device) for g in grads]
    norms = torch.stack([g.reshape(batch, -1).norm(2, dim=-1) for g in grads], dim=1)
    factor = (max_grad_norm / (norms.norm(2, dim=1) + _NORM_EPSILON)).clamp(max=1.0)
    # factor @ (B, size): the clipped sum in one matrix product per parameter.
    return [(factor.to(g.dtype) @ g.reshape(batch, -1)).reshape(g.shape[1:]) for g in grads]


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
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=learning_rate)
    std = float(noise_multiplier * max_grad_norm)
    taken, loss_sum, examples = 0, 0.0, 0
    try:
        for index in poisson_batches(sampler, steps=steps, device=features.device):
            xb, yb = features[index], labels[index]
            grads, losses = per_example_gradients(model, xb, yb)
            summed = clipped_sum(grads, max_grad_norm=max_grad_norm)
            noised = noised_sum(summed, extra_for_step(extra_gradients, taken, params),
                                noise=noise, std=std)
            for p, grad in zip(params, noised, strict=True):
                p.grad = (grad / expected_batch_size).view_as(p)
            optimizer.step()
            taken += 1
            if len(xb):  # an empty Poisson batch still takes a (pure-noise) step
                loss_sum += float(losses.mean()) * len(xb)
                examples += len(xb)
    finally:
        optimizer.zero_grad(set_to_none=True)
    return taken, loss_sum, examples

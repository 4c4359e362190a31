"""Per-example gradients of the binary cross-entropy loss, without Opacus hooks.

This module owns the per-example gradients DP-SGD clips: for every example ``i`` of a batch
and every trainable parameter ``p`` (``model.parameters()`` order), the gradient of
``BCEWithLogits(model(x_i), y_i)`` with respect to ``p``, stacked on a leading batch axis,
exactly what Opacus stores in ``p.grad_sample`` with ``loss_reduction="mean"``.

Four ways, chosen by the model's type:

- :class:`common.models.LogisticRegression`: the closed form. With ``r_i = sigmoid(z_i) - y_i``
  the weight gradient is ``r_i x_i`` and the bias gradient ``r_i``.
- :class:`common.models.MLP`: the backward pass written out for the batch (every layer,
  GroupNorm included, acts on each example alone): the output gradients ``g_i`` of each
  layer, through ReLU and GroupNorm (``(g - mean(g) - xhat * mean(g * xhat)) / sigma`` per
  group), then the per-example gradients in closed form: ``outer(g_i, a_i)`` for a linear
  layer with input ``a_i``, ``g_i * xhat_i`` and ``g_i`` for GroupNorm's scale and shift.
- :class:`common.models.SmallCNN`: one backward pass to each layer's output (``g_i`` per
  example, since the loss is a sum over examples), then per-example gradients from each
  example's own activations: ``g_i`` against the ``unfold``-ed input patches for a
  convolution, ``sum(g_i * xhat_i)`` and ``sum(g_i)`` over positions for GroupNorm, outer
  products for the linear layers.
- any other module: ``torch.func.vmap`` over the gradient of one example's loss (the model
  must treat examples independently, as DP-SGD requires anyway).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import ErrorCode, TesseraError
from common.models import MLP, LogisticRegression, SmallCNN


def per_example_gradients(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-example gradients (one tensor ``(B, *p.shape)`` per parameter) and losses ``(B,)``.

    Every parameter of ``model`` must be trainable; the model must return logits ``(B,)``.
    """
    if not all(p.requires_grad for p in model.parameters()):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            "model: per-example gradients need every parameter trainable",
        )
    if type(model) is LogisticRegression:
        return _logistic(model, xb, yb)
    if closed_form_mlp(model):
        return _mlp(model, xb, yb)
    if type(model) is SmallCNN and len(yb) > 0:
        return _cnn(model, xb, yb)
    return _vmapped(model, xb, yb)


def check_logits(logits: torch.Tensor, yb: torch.Tensor) -> None:
    if logits.shape != yb.shape:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"model: must return logits of shape (N,), got {tuple(logits.shape)} "
            f"for a batch of {len(yb)}",
        )


def losses_of(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, yb, reduction="none")


def _logistic(
    model: LogisticRegression, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    with torch.no_grad():
        layer = model.linear
        logits = F.linear(xb, layer.weight, layer.bias).reshape(-1)
        check_logits(logits, yb)
        residual = torch.sigmoid(logits) - yb  # d loss_i / d z_i
        weight = (residual[:, None] * xb)[:, None, :]  # (B, 1, F)
        bias = residual[:, None]  # (B, 1)
        return [weight, bias], losses_of(logits, yb)


@dataclass(frozen=True)
class MlpBackward:
    """The MLP's forward and hand-written backward pass over a batch (every tensor ``(B, ...)``):
    what its per-example gradients are made of (see the module notes)."""

    logits: torch.Tensor  # (B,)
    g_logits: torch.Tensor  # (B,): d loss_i / d logit_i
    active: torch.Tensor  # (B, width): fc2's input
    g_scaled: torch.Tensor  # (B, width): d loss_i / d (GroupNorm output), after ReLU
    standard: torch.Tensor  # (B, width): GroupNorm's normalised input, before its affine part
    g_hidden: torch.Tensor  # (B, width): d loss_i / d (fc1 output)


def closed_form_mlp(model: nn.Module) -> TypeGuard[MLP]:
    """Whether ``model`` is the zoo's MLP in the form :func:`mlp_backward` writes out."""
    return (type(model) is MLP and model.norm.affine and type(model.act) is nn.ReLU
            and tuple(name for name, _ in model.named_parameters()) == MLP_PARAMETERS)


#: The closed-form MLP's parameters, in ``model.parameters()`` order.
MLP_PARAMETERS = ("fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "fc2.weight",
                  "fc2.bias")


def mlp_backward(model: MLP, xb: torch.Tensor, yb: torch.Tensor) -> MlpBackward:
    """Forward and backward by hand, example by example (every layer acts on one example).

    GroupNorm's per-group means are products with a block-averaging matrix ``A`` (and the
    centring ``h - mean`` one product with ``I - A``): the same numbers to float rounding as
    reshaping and reducing, at a third of the cost on a batch of a few hundred rows.
    """
    norm = model.norm
    fc1_weight, fc2_weight = model.fc1.weight, model.fc2.weight
    with torch.no_grad():
        average, centring = _group_matrices(fc1_weight.shape[0], norm.num_groups, fc1_weight)
        hidden = xb @ fc1_weight.T + model.fc1.bias
        centred = hidden @ centring
        rstd = torch.rsqrt((centred * centred) @ average + norm.eps)  # 1 / group spread
        standard = centred * rstd  # GroupNorm without its affine part
        scaled = torch.addcmul(norm.bias, standard, norm.weight)
        active = F.relu(scaled)
        logits = active @ fc2_weight[0] + model.fc2.bias
        check_logits(logits, yb)
        g_logits = torch.sigmoid(logits) - yb  # d loss_i / d z_i
        # ReLU's derivative (1 where the output is positive, else 0) as the sign of its output.
        g_scaled = g_logits[:, None] * fc2_weight * torch.sign(active)
        g_standard = g_scaled * norm.weight
        g_hidden = (g_standard @ centring - standard * ((g_standard * standard) @ average)) * rstd
    return MlpBackward(logits=logits, g_logits=g_logits, active=active, g_scaled=g_scaled,
                       standard=standard, g_hidden=g_hidden)


@functools.lru_cache(maxsize=16)
def _block_matrices(width: int, groups: int, dtype: torch.dtype,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    size = width // groups
    block = torch.full((size, size), 1.0 / size, dtype=dtype, device=device)
    average = torch.block_diag(*[block] * groups)
    return average, torch.eye(width, dtype=dtype, device=device) - average


def _group_matrices(width: int, groups: int,
                    like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, I - A)``, each ``(width, width)``: ``h @ A`` replaces each value by its group's
    mean, ``h @ (I - A)`` subtracts it."""
    return _block_matrices(width, groups, like.dtype, like.device)


def _mlp(
    model: MLP, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    back = mlp_backward(model, xb, yb)
    with torch.no_grad():
        grads = {
            "fc1.weight": back.g_hidden[:, :, None] * xb[:, None, :],
            "fc1.bias": back.g_hidden,
            "norm.weight": back.g_scaled * back.standard,
            "norm.bias": back.g_scaled,
            "fc2.weight": (back.g_logits[:, None] * back.active)[:, None, :],
            "fc2.bias": back.g_logits[:, None],
        }
    return [grads[name] for name in MLP_PARAMETERS], losses_of(back.logits, yb)


def _cnn(
    model: SmallCNN, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One backward pass to every layer's output, then each example's parameter gradients
    from its own activations and output gradients (convolutions through ``unfold``)."""
    batch, side = len(yb), model.side
    images = xb.reshape(batch, 1, side, side)
    acts = images.detach()
    z1 = F.conv2d(acts, *_fixed(model.conv1), padding=1)
    z1.requires_grad_(True)
    n1 = F.group_norm(z1, model.norm1.num_groups, eps=model.norm1.eps)
    s1 = n1 * model.norm1.weight.detach()[:, None, None] + model.norm1.bias.detach()[:, None, None]
    s1.retain_grad()
    h1 = torch.relu(s1)
    z2 = F.conv2d(h1, *_fixed(model.conv2), padding=1)
    z2.retain_grad()
    n2 = F.group_norm(z2, model.norm2.num_groups, eps=model.norm2.eps)
    s2 = n2 * model.norm2.weight.detach()[:, None, None] + model.norm2.bias.detach()[:, None, None]
    s2.retain_grad()
    pooled = F.max_pool2d(torch.relu(s2), 2).flatten(1)
    f1 = F.linear(pooled, model.fc1.weight.detach(), model.fc1.bias.detach())
    f1.retain_grad()
    hidden = torch.relu(f1)
    logits = F.linear(hidden, model.fc2.weight.detach(), model.fc2.bias.detach()).reshape(-1)
    check_logits(logits, yb)
    losses = losses_of(logits, yb)
    losses.sum().backward()
    with torch.no_grad():
        g_z1, g_s1, g_z2, g_s2, g_f1 = (_grad_of(t) for t in (z1, s1, z2, s2, f1))
        g_logits = torch.sigmoid(logits) - yb
        cols1 = F.unfold(acts, 3, padding=1)  # (B, 9, HW)
        cols2 = F.unfold(h1, 3, padding=1)  # (B, C1 * 9, HW)
        grads = {
            "conv1.weight": torch.einsum("bol,bil->boi", g_z1.flatten(2), cols1)
            .reshape(batch, *model.conv1.weight.shape),
            "conv1.bias": g_z1.sum(dim=(2, 3)),
            "norm1.weight": (g_s1 * n1).sum(dim=(2, 3)),
            "norm1.bias": g_s1.sum(dim=(2, 3)),
            "conv2.weight": torch.einsum("bol,bil->boi", g_z2.flatten(2), cols2)
            .reshape(batch, *model.conv2.weight.shape),
            "conv2.bias": g_z2.sum(dim=(2, 3)),
            "norm2.weight": (g_s2 * n2).sum(dim=(2, 3)),
            "norm2.bias": g_s2.sum(dim=(2, 3)),
            "fc1.weight": g_f1[:, :, None] * pooled[:, None, :],
            "fc1.bias": g_f1,
            "fc2.weight": (g_logits[:, None] * hidden)[:, None, :],
            "fc2.bias": g_logits[:, None],
        }
    names = [name for name, _ in model.named_parameters()]
    if sorted(names) != sorted(grads):
        return _vmapped(model, xb, yb)
    return [grads[name].detach() for name in names], losses.detach()


def _fixed(layer: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A convolution's weight and bias, cut from autograd (parameters get no ``.grad``)."""
    return layer.weight.detach(), None if layer.bias is None else layer.bias.detach()


def _grad_of(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.grad is None:  # pragma: no cover (every layer output is on the loss's path)
        raise TesseraError(ErrorCode.INTERNAL, "model: a layer output received no gradient")
    return tensor.grad


def _vmapped(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    from torch.func import functional_call, grad_and_value, vmap

    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    with torch.no_grad():
        logits = model(xb)
    check_logits(logits, yb)
    if len(yb) == 0:
        empty = [torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                 for p in params.values()]
        return empty, losses_of(logits, yb)

    def one(
        values: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        out = functional_call(model, (values, buffers), (x.unsqueeze(0),))
        return F.binary_cross_entropy_with_logits(out.reshape(-1), y.reshape(1))

    grads, losses = vmap(grad_and_value(one), in_dims=(None, 0, 0), randomness="different")(
        params, xb, yb
    )
    return [grads[name].detach() for name in names], losses.detach()

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
    if type(model) is MLP and model.norm.affine and type(model.act) is nn.ReLU:
        return _mlp(model, xb, yb)
    if type(model) is SmallCNN and len(yb) > 0:
        return _cnn(model, xb, yb)
    return _vmapped(model, xb, yb)


def _check_logits(logits: torch.Tensor, yb: torch.Tensor) -> None:
    if logits.shape != yb.shape:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"model: must return logits of shape (N,), got {tuple(logits.shape)} "
            f"for a batch of {len(yb)}",
        )


def _losses(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, yb, reduction="none")


def _logistic(
    model: LogisticRegression, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    with torch.no_grad():
        layer = model.linear
        logits = F.linear(xb, layer.weight, layer.bias).reshape(-1)
        _check_logits(logits, yb)
        residual = torch.sigmoid(logits) - yb  # d loss_i / d z_i
        weight = (residual[:, None] * xb)[:, None, :]  # (B, 1, F)
        bias = residual[:, None]  # (B, 1)
        return [weight, bias], _losses(logits, yb)


def _mlp(
    model: MLP, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    norm = model.norm
    batch, width, groups = len(yb), model.fc1.out_features, norm.num_groups
    with torch.no_grad():
        hidden = F.linear(xb, model.fc1.weight, model.fc1.bias)
        grouped = hidden.reshape(batch, groups, width // groups)
        centred = grouped - grouped.mean(dim=2, keepdim=True)
        spread = torch.sqrt((centred * centred).mean(dim=2, keepdim=True) + norm.eps)
        standard = centred / spread  # GroupNorm without its affine part
        scaled = standard.reshape(batch, width) * norm.weight + norm.bias
        active = F.relu(scaled)
        logits = F.linear(active, model.fc2.weight, model.fc2.bias).reshape(-1)
        _check_logits(logits, yb)
        # Backward by hand, example by example (every layer acts on one example alone).
        g_logits = torch.sigmoid(logits) - yb  # d loss_i / d z_i
        g_scaled = (g_logits[:, None] * model.fc2.weight) * (scaled > 0)
        g_standard = (g_scaled * norm.weight).reshape(batch, groups, width // groups)
        g_hidden = (g_standard - g_standard.mean(dim=2, keepdim=True)
                    - standard * (g_standard * standard).mean(dim=2, keepdim=True)) / spread
        g_hidden = g_hidden.reshape(batch, width)
        grads = {
            "fc1.weight": g_hidden[:, :, None] * xb[:, None, :],
            "fc1.bias": g_hidden,
            "norm.weight": g_scaled * standard.reshape(batch, width),
            "norm.bias": g_scaled,
            "fc2.weight": (g_logits[:, None] * active)[:, None, :],
            "fc2.bias": g_logits[:, None],
        }
    names = [name for name, _ in model.named_parameters()]
    if sorted(names) != sorted(grads):
        return _vmapped(model, xb, yb)
    return [grads[name] for name in names], _losses(logits, yb)


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
    _check_logits(logits, yb)
    losses = _losses(logits, yb)
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
    _check_logits(logits, yb)
    if len(yb) == 0:
        empty = [torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                 for p in params.values()]
        return empty, _losses(logits, yb)

    def one(
        values: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        out = functional_call(model, (values, buffers), (x.unsqueeze(0),))
        return F.binary_cross_entropy_with_logits(out.reshape(-1), y.reshape(1))

    grads, losses = vmap(grad_and_value(one), in_dims=(None, 0, 0), randomness="different")(
        params, xb, yb
    )
    return [grads[name].detach() for name in names], losses.detach()

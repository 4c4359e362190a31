"""The model zoo: the torch modules a study plan can name, and their flat-vector form.

Every model maps a float32 batch ``(N, F)`` to logits of shape ``(N,)`` (the image CNN reads
each row as a square single-channel image). Models use
GroupNorm rather than BatchNorm, because BatchNorm mixes examples within a batch (which
breaks per-example DP-SGD) and keeps running statistics that would leak through updates.
Initialisation is deterministic from a seed and never touches torch's global RNG.
The flat-vector helpers turn a model's ``state_dict`` into the float64 vector that is
clipped, encrypted and aggregated, and back.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot, layout_length
from common.plan import ModelSpec

_OPACUS_PREFIX = "_module."


def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """torch's default Linear initialisation, drawn from ``generator``."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(layer.in_features)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def _linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out)
    _init_linear(layer, generator)
    return layer


class LogisticRegression(nn.Module):
    """One linear layer producing a logit per example."""

    def __init__(self, n_features: int, generator: torch.Generator) -> None:
        super().__init__()
        self.linear = _linear(n_features, 1, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).reshape(-1)


class MLP(nn.Module):
    """Linear -> GroupNorm -> ReLU -> Linear, producing a logit per example."""

    def __init__(
        self, n_features: int, *, hidden: int, groups: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.fc1 = _linear(n_features, hidden, generator)
        self.norm = nn.GroupNorm(groups, hidden)
        self.act = nn.ReLU()
        self.fc2 = _linear(hidden, 1, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(x)))).reshape(-1)


def _conv(n_in: int, n_out: int, generator: torch.Generator) -> nn.Conv2d:
    """A 3x3 convolution (padding 1) with torch's default initialisation from ``generator``."""
    layer = nn.utils.skip_init(nn.Conv2d, n_in, n_out, 3, padding=1)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(n_in * 9)
        if layer.bias is not None:
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


class SmallCNN(nn.Module):
    """A small image CNN over square single-channel images given as flat rows of pixels.

    conv 3x3 (16) -> GroupNorm -> ReLU -> conv 3x3 (32) -> GroupNorm -> ReLU -> max-pool 2
    -> linear (``hidden``) -> ReLU -> linear, producing a logit per example. Every layer acts
    on each example alone (GroupNorm, not BatchNorm), as per-example DP-SGD needs.
    """

    CHANNELS = (16, 32)

    def __init__(self, n_features: int, *, hidden: int, groups: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        side = math.isqrt(n_features)
        if side * side != n_features or side < 2:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"n_features: a cnn needs a square number of pixels (at least "
                               f"4), got {n_features}")
        first, second = self.CHANNELS
        self.side = side
        self.conv1 = _conv(1, first, generator)
        self.norm1 = nn.GroupNorm(groups, first)
        self.conv2 = _conv(first, second, generator)
        self.norm2 = nn.GroupNorm(groups, second)
        self.fc1 = _linear(second * (side // 2) ** 2, hidden, generator)
        self.fc2 = _linear(hidden, 1, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(-1, 1, self.side, self.side)
        h = torch.relu(self.norm1(self.conv1(images)))
        h = torch.relu(self.norm2(self.conv2(h)))
        h = torch.nn.functional.max_pool2d(h, 2).flatten(1)
        return self.fc2(torch.relu(self.fc1(h))).reshape(-1)


def build_model(spec: ModelSpec, *, n_features: int, seed: int) -> nn.Module:
    """Build the plan's model for ``n_features`` inputs, initialised from ``seed``."""
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "n_features: must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "seed: must be an integer in [0, 2**63)")
    generator = torch.Generator().manual_seed(seed)
    if spec.kind == "logreg":
        return LogisticRegression(n_features, generator)
    if spec.kind == "mlp":
        return MLP(n_features, hidden=spec.hidden, groups=spec.groups, generator=generator)
    if spec.kind == "cnn":
        return SmallCNN(n_features, hidden=spec.hidden, groups=spec.groups, generator=generator)
    raise TesseraError(ErrorCode.CONFIG_INVALID, f"model.kind: unknown model {spec.kind!r}")


def _strip(name: str) -> str:
    while name.startswith(_OPACUS_PREFIX):
        name = name.removeprefix(_OPACUS_PREFIX)
    return name


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(_strip(name), tensor) for name, tensor in model.state_dict().items()]


def model_to_vector(model: nn.Module) -> tuple[np.ndarray, list[TensorSlot]]:
    """Flatten the state_dict (in order) into a float64 vector and describe its layout."""
    layout: list[TensorSlot] = []
    parts: list[np.ndarray] = []
    offset = 0
    for name, tensor in _named_tensors(model):
        values = tensor.detach().cpu().to(torch.float64).reshape(-1).numpy()
        layout.append(TensorSlot(name, tuple(tensor.shape), offset, values.size))
        parts.append(values)
        offset += values.size
    vector = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    return vector.astype(np.float64, copy=True), layout


def _fail(message: str) -> TesseraError:
    return TesseraError(ErrorCode.CONFIG_INVALID, f"model vector: {message}")


def vector_to_model(model: nn.Module, vector: np.ndarray, layout: list[TensorSlot]) -> None:
    """Load a flat vector into ``model`` in place, after checking it matches the model."""
    values = np.asarray(vector)
    if values.ndim != 1:
        raise _fail(f"expected a 1-D vector, got {values.ndim} dimensions")
    if values.size != layout_length(layout):
        covered = layout_length(layout)
        raise _fail(f"vector has {values.size} values but the layout covers {covered}")
    tensors = _named_tensors(model)
    if len(tensors) != len(layout):
        raise _fail(f"layout has {len(layout)} tensors but the model has {len(tensors)}")
    for (name, tensor), slot in zip(tensors, layout, strict=True):
        if _strip(slot.name) != name:
            raise _fail(f"tensor {name!r}: layout names {slot.name!r} in its place")
        if tuple(slot.shape) != tuple(tensor.shape):
            raise _fail(
                f"tensor {name!r}: layout shape {tuple(slot.shape)} "
                f"!= model shape {tuple(tensor.shape)}"
            )
        if slot.length != tensor.numel():
            raise _fail(f"tensor {name!r}: layout length {slot.length} != {tensor.numel()}")
        if not np.all(np.isfinite(values[slot.offset : slot.offset + slot.length])):
            raise _fail(f"tensor {name!r}: contains non-finite values")
    with torch.no_grad():
        for (_, tensor), slot in zip(tensors, layout, strict=True):
            chunk = np.ascontiguousarray(values[slot.offset : slot.offset + slot.length])
            source = torch.from_numpy(chunk.astype(np.float64, copy=True))
            tensor.copy_(source.reshape(tensor.shape).to(tensor.dtype))


def predict_scores(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Positive-class probabilities (float64) for rows of ``X``, in eval mode without grad."""
    features = np.asarray(X)
    if features.ndim != 2:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "X: expected a 2-D array (rows, features)")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            logits = model(batch)
    finally:
        model.train(was_training)
    return torch.sigmoid(logits.to(torch.float64)).numpy().reshape(-1).copy()

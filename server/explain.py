"""Per-patient explanations for batch prediction: how much each feature moved the logit.

Every explanation is relative to the **baseline patient**, whose every feature sits at the
federation-wide mean (all zeros after standardisation). A feature's contribution is its
share of ``logit(patient) - logit(baseline)``, so for every row

    logit = baseline_logit + sum of the contributions.

* Logistic regression: the exact contributions ``w_i * x_std_i`` (the intercept is the
  baseline logit).
* Any other zoo model (the MLP): integrated gradients along the straight path from the
  baseline, in float64, with a midpoint Riemann sum. Rows start at :data:`IG_STEPS` steps;
  a row whose contributions miss the completeness identity above by more than
  :data:`COMPLETENESS_TOL` is recomputed with twice the steps, up to :data:`MAX_STEPS`
  (ReLU kinks along the path make the integrand jump, so a few rows need many steps).
  :attr:`Explanation.max_gap` says how close the worst row came.

Implemented directly in torch (about thirty lines) rather than through captum: the adaptive
per-row refinement is what meets the completeness tolerance on the GroupNorm/ReLU MLP.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.errors import ErrorCode, TesseraError
from common.models import LogisticRegression

IG_STEPS = 64
MAX_STEPS = 16384
COMPLETENESS_TOL = 1e-3
#: Most path points evaluated in one forward/backward pass (bounds memory).
_CHUNK_POINTS = 1 << 20


@dataclass(frozen=True)
class Explanation:
    """Contributions ``(rows, features)`` to each row's logit, relative to the baseline."""

    method: str
    features: tuple[str, ...]
    contributions: np.ndarray
    logits: np.ndarray
    baseline_logit: float
    max_gap: float

    def top(self, k: int = 3) -> list[list[str]]:
        """Per row, the ``k`` features with the largest absolute contribution (ties: order)."""
        k = min(k, len(self.features))
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")[:, :k]
        return [[self.features[j] for j in row] for row in order]


def _logits(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(X).reshape(-1)


def _linear(model: LogisticRegression, X: np.ndarray) -> tuple[np.ndarray, float]:
    weight = model.linear.weight.detach().to(torch.float64).numpy().reshape(-1)
    bias = float(model.linear.bias.detach().to(torch.float64).reshape(-1)[0])
    return X * weight, bias


def _integrated_gradients(model: nn.Module, X: torch.Tensor, steps: int) -> torch.Tensor:
    """IG from the zero baseline with ``steps`` midpoints, for every row of ``X``."""
    rows_per_chunk = max(1, _CHUNK_POINTS // steps)
    alphas = ((torch.arange(steps, dtype=torch.float64) + 0.5) / steps)[:, None, None]
    parts = []
    for start in range(0, X.shape[0], rows_per_chunk):
        chunk = X[start:start + rows_per_chunk]
        path = (alphas * chunk[None]).reshape(-1, X.shape[1]).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(path).sum(), path)
        parts.append(chunk * grad.reshape(steps, *chunk.shape).mean(dim=0))
    return torch.cat(parts)


def explain(model: nn.Module, X_std: np.ndarray, features: list[str] | tuple[str, ...], *,
            steps: int = IG_STEPS, max_steps: int = MAX_STEPS,
            tolerance: float = COMPLETENESS_TOL) -> Explanation:
    """Contributions of each feature to each row's logit (``X_std``: standardised rows)."""
    X = np.asarray(X_std, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(features):
        raise TesseraError(ErrorCode.DATA_INVALID, "explain: X must be (rows, features)")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= max_steps:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "steps: must be in [1, max_steps]")
    names = tuple(features)
    if isinstance(model, LogisticRegression):
        contributions, bias = _linear(model, X)
        logits = contributions.sum(axis=1) + bias
        return Explanation("exact-linear", names, contributions, logits, bias, 0.0)
    exact = copy.deepcopy(model).to(torch.float64).eval()
    for parameter in exact.parameters():
        parameter.requires_grad_(False)
    inputs = torch.from_numpy(np.ascontiguousarray(X))
    logits = _logits(exact, inputs)
    baseline = float(_logits(exact, torch.zeros(1, X.shape[1], dtype=torch.float64))[0])
    target = logits - baseline
    attributions = torch.zeros_like(inputs)
    gaps = torch.full((X.shape[0],), torch.inf, dtype=torch.float64)
    pending = torch.arange(X.shape[0])
    while pending.numel():
        found = _integrated_gradients(exact, inputs[pending], steps)
        gap = (found.sum(dim=1) - target[pending]).abs()
        better = gap < gaps[pending]
        attributions[pending[better]] = found[better]
        gaps[pending[better]] = gap[better]
        pending = pending[gap > tolerance]
        steps *= 2
        if steps > max_steps:
            break
    max_gap = float(gaps.max()) if X.shape[0] else 0.0
    return Explanation("integrated-gradients", names, attributions.numpy(), logits.numpy(),
                       baseline, max_gap)

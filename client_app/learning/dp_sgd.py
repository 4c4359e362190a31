"""DP-SGD wired to the secure randomness of :mod:`privacy.secure_noise` (both engines).

This module owns the two places where DP-SGD draws randomness, replacing Opacus's torch
(Mersenne Twister) draws with ChaCha20 ones keyed by the run's secret key:

- :class:`SecureNoiseDPOptimizer`, an Opacus ``DPOptimizer`` whose :meth:`add_noise` adds
  floating-point-hardened Gaussian noise (std ``noise_multiplier * max_grad_norm``) from
  :class:`privacy.secure_noise.SecureGaussian` to the sum of clipped per-example gradients;
  clipping, averaging and the step itself stay Opacus's;
- :func:`poisson_batches`, the Poisson-sampled batch indices of every step, from
  :class:`privacy.secure_noise.SecurePoissonSampler`;
- :func:`noised_sum` and :func:`extra_for_step`, the noise draw and the auditing hook's
  check, which the hook-free engine (:mod:`client_app.learning.fast_dp`) shares so that one
  key gives both engines the same batches and the same noise.

:data:`ExtraGradients` is an auditing hook: called at each step with the step index, it may
return one tensor per trainable parameter (``model.parameters()`` order) that is added to
the summed clipped gradients before the noise, exactly as extra examples of the batch would
be. Each extra example's gradient must have L2 norm at most ``max_grad_norm`` for the
accountant's figure to cover it; the privacy audit uses it to insert canary gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from opacus.optimizers.optimizer import DPOptimizer, _check_processed_flag, _mark_as_processed

from common.errors import ErrorCode, TesseraError
from privacy.secure_noise import SecureGaussian, SecurePoissonSampler

#: ``step index -> one tensor per trainable parameter, or None`` (see the module notes).
ExtraGradients = Callable[[int], Sequence[torch.Tensor] | None]


class SecureNoiseDPOptimizer(DPOptimizer):
    """``DPOptimizer`` drawing its Gaussian noise from a ChaCha20 stream (loss: mean)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        noise: SecureGaussian,
        extra_gradients: ExtraGradients | None = None,
    ) -> None:
        super().__init__(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction="mean",
            generator=None,
            secure_mode=False,  # Opacus's own secure mode needs torchcsprng; ours replaces it
        )
        self._secure_noise = noise
        self._extra_gradients = extra_gradients
        self.noise_steps = 0

    def add_noise(self) -> None:
        """Add secure noise to the clipped, summed gradients; store the result in ``p.grad``."""
        params = list(self.params)
        for p in params:
            _check_processed_flag(p.summed_grad)
        noised = noised_sum(
            [p.summed_grad for p in params],
            extra_for_step(self._extra_gradients, self.noise_steps, params),
            noise=self._secure_noise,
            std=float(self.noise_multiplier * self.max_grad_norm),
        )
        for p, grad in zip(params, noised, strict=True):
            p.grad = grad.view_as(p)
            _mark_as_processed(p.summed_grad)
        self.noise_steps += 1


def noised_sum(
    summed: Sequence[torch.Tensor],
    extras: Sequence[torch.Tensor | None],
    *,
    noise: SecureGaussian,
    std: float,
) -> list[torch.Tensor]:
    """``summed + extra + N(0, std**2)`` per parameter, from one draw for all of them.

    The draw is in float64, split in parameter order and cast to each parameter's dtype:
    both DP-SGD engines call this, so one key gives both the same noise.
    """
    sizes = [s.numel() for s in summed]
    flat = noise.noise(sum(sizes), std=std)
    out: list[torch.Tensor] = []
    offset = 0
    for total, size, extra in zip(summed, sizes, extras, strict=True):
        base = total if extra is None else total + extra
        chunk = torch.from_numpy(np.ascontiguousarray(flat[offset : offset + size]))
        out.append(base + chunk.to(dtype=base.dtype, device=base.device).view_as(base))
        offset += size
    return out


def extra_for_step(
    extra_gradients: ExtraGradients | None, step: int, params: Sequence[torch.Tensor]
) -> list[torch.Tensor | None]:
    """The auditing hook's tensors for ``step`` (checked against ``params``), or Nones."""
    if extra_gradients is None:
        return [None] * len(params)
    extras = extra_gradients(step)
    if extras is None:
        return [None] * len(params)
    extras = list(extras)
    if len(extras) != len(params) or any(
        tuple(e.shape) != tuple(p.shape) for e, p in zip(extras, params, strict=True)
    ):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            "extra_gradients: must return one tensor per trainable parameter, shaped like it",
        )
    return [e.detach().to(dtype=p.dtype, device=p.device)
            for e, p in zip(extras, params, strict=True)]


def poisson_batches(
    sampler: SecurePoissonSampler, *, steps: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """Index tensors of ``steps`` Poisson batches (possibly empty), on ``device``."""
    for _ in range(steps):
        yield torch.from_numpy(sampler.batch()).to(device)

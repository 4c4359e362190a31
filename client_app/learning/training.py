"""Local training on a site's data: DP-SGD, or plain mini-batch SGD.

This module owns one local training run of a binary classifier that returns logits of shape
``(N,)``: binary cross-entropy with logits, plain SGD, trained in place on the caller's module.
With ``dp=True`` it runs DP-SGD (per-sample clipping to ``max_grad_norm``, Gaussian noise at
the given multiplier, Poisson sampling; per-example gradients computed directly, or through
Opacus's hooks as the reference engine) and takes exactly the number of optimizer steps
:func:`privacy.accounting.plan_sampling` plans, so that the site's ledger entry
``DpStep(noise_multiplier, sample_rate, steps)`` describes what really happened.

Randomness: with DP, the Poisson sampling and the Gaussian noise come from a ChaCha20 keystream
(:mod:`privacy.secure_noise`, wired in by :mod:`client_app.learning.dp_sgd`) keyed with
``noise_key``, 256 fresh secret bits per run unless the caller passes a key (at least 128
bits); the key never leaves this function. ``seed`` drives only what carries no privacy
guarantee: plain training's shuffling and any randomness inside the model (dropout), drawn
from a forked torch RNG so the global one is never disturbed. The model's initial weights
are the caller's (the study's public seed).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from common.errors import ErrorCode, TesseraError
from privacy.accounting import plan_sampling, steps_per_epoch
from privacy.secure_noise import SecureGaussian, SecurePoissonSampler, check_key, new_key

# Opacus (and client_app.learning.dp_sgd, which imports it) is imported lazily inside
# _train_dp, after privacy.accounting has imported it without its root-logger side effect.
if TYPE_CHECKING:
    from client_app.learning.dp_sgd import ExtraGradients

#: Warnings Opacus and torch raise on every DP run that say nothing about this run.
_EXPECTED_WARNINGS = (
    r".*[Ss]ecure RNG turned off.*",  # Opacus's own secure mode is off: our noise replaces it
    r"Full backward hook is firing.*",  # per-sample gradient hooks on an input-free graph
)


#: DP-SGD engines: per-example gradients computed directly, or through Opacus's hooks.
DP_ENGINES = ("fast", "opacus")


@dataclass(frozen=True)
class TrainOutcome:
    """What one local training run did (counts and timings only, never data)."""

    steps: int
    sample_rate: float
    noise_multiplier: float
    mean_loss: float
    seconds: float
    dp: bool


def train_local(
    model: torch.nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    dp: bool,
    noise_multiplier: float,
    max_grad_norm: float,
    seed: int,
    noise_key: bytes | None = None,
    extra_gradients: ExtraGradients | None = None,
    released_rows: int | None = None,
    engine: str = "fast",
) -> TrainOutcome:
    """Train ``model`` in place on ``(X, y)`` and report what was done.

    ``mean_loss`` is the example-weighted mean training loss over all steps (NaN if every
    sampled batch was empty). It is computed from the raw data and is not DP-protected: keep
    it on the site. With ``dp=False``, ``noise_multiplier`` and ``max_grad_norm`` are ignored
    and the outcome reports a noise multiplier of 0.

    ``noise_key`` (DP only) keys the noise and sampling streams; leave it ``None`` in
    production (fresh secret bits per run), pass one only to reproduce a run in a test.
    ``extra_gradients`` (DP only) is the auditing hook of
    :data:`client_app.learning.dp_sgd.ExtraGradients`. ``released_rows``: the row count the
    site released (client_app/agent/row_counts.py), which then sets the sample rate, the
    steps and the mean's denominator instead of the exact count of ``X``. ``engine`` (DP
    only): ``"fast"`` computes per-example gradients directly
    (:mod:`client_app.learning.fast_dp`), ``"opacus"`` through Opacus's hooks, the reference;
    both clip, sample and noise alike, so one key gives the same step to float rounding.
    """
    _check_model(model)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not _is_int(value) or value < 1:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID, f"{name}: must be an integer >= 1, got {value!r}"
            )
    if not _is_int(seed) or seed < 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"seed: must be an integer >= 0, got {seed!r}")
    _check_positive("learning_rate", learning_rate)
    if not isinstance(dp, bool):
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"dp: must be a bool, got {dp!r}")
    key = b""  # DP only: the run's secret key, never returned, logged or stored
    if dp:
        _check_positive("noise_multiplier", noise_multiplier)
        _check_positive("max_grad_norm", max_grad_norm)
        key = new_key() if noise_key is None else check_key(noise_key)
    else:
        for name, given in (("noise_key", noise_key), ("extra_gradients", extra_gradients)):
            if given is not None:
                raise TesseraError(
                    ErrorCode.CONFIG_INVALID, f"{name}: applies to DP-SGD only (dp=True)"
                )
    if engine not in DP_ENGINES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"engine: must be one of {', '.join(DP_ENGINES)}, got {engine!r}")
    if extra_gradients is not None and not callable(extra_gradients):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "extra_gradients: must be callable")
    parameter = next(model.parameters())
    features, labels = _tensors(X, y, dtype=parameter.dtype, device=parameter.device)

    n_train = int(features.shape[0])
    if released_rows is not None and (not _is_int(released_rows) or released_rows < 1):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"released_rows: must be an integer >= 1, got {released_rows!r}")
    shown_rows = n_train if released_rows is None else released_rows
    sample_rate, planned_steps = plan_sampling(
        n_train=shown_rows, batch_size=batch_size, epochs=epochs
    )
    loader_seed, model_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))

    was_training = model.training
    started = time.perf_counter()
    cuda_devices = [parameter.device.index or 0] if parameter.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(model_seed)  # dropout and the like draw from the forked RNG
        model.train()
        try:
            if dp:
                steps, loss_sum, examples = _train_dp(
                    model,
                    features,
                    labels,
                    sample_rate=sample_rate,
                    steps=planned_steps,
                    shown_rows=shown_rows,
                    learning_rate=learning_rate,
                    noise_multiplier=noise_multiplier,
                    max_grad_norm=max_grad_norm,
                    key=key,
                    extra_gradients=extra_gradients,
                    engine=engine,
                )
            else:
                steps, loss_sum, examples = _train_plain(
                    model,
                    features,
                    labels,
                    batches_per_epoch=steps_per_epoch(sample_rate=sample_rate),
                    batch_size=min(batch_size, n_train),
                    epochs=epochs,
                    learning_rate=learning_rate,
                    generator=torch.Generator(device="cpu").manual_seed(loader_seed),
                )
        finally:
            model.train(was_training)
    seconds = time.perf_counter() - started

    if steps != planned_steps:
        raise TesseraError(
            ErrorCode.INTERNAL,
            f"training took {steps} optimizer steps but the privacy plan counted {planned_steps}",
        )
    return TrainOutcome(
        steps=steps,
        sample_rate=sample_rate,
        noise_multiplier=float(noise_multiplier) if dp else 0.0,
        mean_loss=loss_sum / examples if examples else math.nan,
        seconds=seconds,
        dp=dp,
    )


def _train_dp(
    model: torch.nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    sample_rate: float,
    steps: int,
    learning_rate: float,
    noise_multiplier: float,
    max_grad_norm: float,
    key: bytes,
    extra_gradients: ExtraGradients | None,
    shown_rows: int,
    engine: str,
) -> tuple[int, float, int]:
    """DP-SGD with Poisson sampling at exactly ``sample_rate`` and secure noise."""
    from opacus.grad_sample.utils import prepare_module
    from opacus.validators import ModuleValidator

    from client_app.learning.dp_sgd import SecureNoiseDPOptimizer, poisson_batches

    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"model: not trainable with DP-SGD ({len(problems)} problem(s), first: {problems[0]})",
        )
    n_train = int(features.shape[0])
    sampler = SecurePoissonSampler(key, n=n_train, sample_rate=sample_rate)
    # The mean's denominator: the expected Poisson batch, q * n, with the released n (a
    # public figure, never the exact count).
    expected_batch_size = max(1, round(sample_rate * shown_rows))
    if engine == "fast" and all(p.requires_grad for p in model.parameters()):
        from client_app.learning.fast_dp import train_dp_fast

        try:
            return train_dp_fast(
                model, features, labels, sampler=sampler, steps=steps,
                learning_rate=learning_rate, noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm, expected_batch_size=expected_batch_size,
                noise=SecureGaussian(key), extra_gradients=extra_gradients,
            )
        finally:
            _strip_optimizer_state(model)
    with warnings.catch_warnings():
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        # Per-sample gradient hooks on the caller's module (its state_dict keys unchanged).
        hooks = prepare_module(
            model, grad_sample_mode="hooks", wrap_model=False, batch_first=True,
            loss_reduction="mean",
        )
        try:
            dp_optimizer = SecureNoiseDPOptimizer(
                torch.optim.SGD(model.parameters(), lr=learning_rate),
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                expected_batch_size=expected_batch_size,
                noise=SecureGaussian(key),
                extra_gradients=extra_gradients,
            )
            loss_fn = torch.nn.BCEWithLogitsLoss()
            taken, loss_sum, examples = 0, 0.0, 0
            for index in poisson_batches(sampler, steps=steps, device=features.device):
                xb, yb = features[index], labels[index]
                loss = _step(model, dp_optimizer, loss_fn, xb, yb)
                taken += 1
                if len(xb):  # an empty Poisson batch still takes a (pure-noise) step
                    loss_sum += loss * len(xb)
                    examples += len(xb)
            if dp_optimizer.noise_steps != taken:
                raise TesseraError(
                    ErrorCode.INTERNAL,
                    f"{taken} steps were taken but {dp_optimizer.noise_steps} were noised",
                )
        finally:
            hooks.cleanup()
            _strip_optimizer_state(model)
    return taken, loss_sum, examples


def _train_plain(
    model: torch.nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    batches_per_epoch: int,
    batch_size: int,
    epochs: int,
    learning_rate: float,
    generator: torch.Generator,
) -> tuple[int, float, int]:
    """Shuffled mini-batch SGD with as many steps as the DP plan."""
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n_train = int(features.shape[0])
    steps, loss_sum, examples = 0, 0.0, 0
    try:
        for _ in range(epochs):
            order = torch.randperm(n_train, generator=generator).to(features.device)
            for batch in range(batches_per_epoch):
                index = order[batch * batch_size : (batch + 1) * batch_size]
                loss = _step(model, optimizer, loss_fn, features[index], labels[index])
                steps += 1
                loss_sum += loss * len(index)
                examples += len(index)
    finally:
        optimizer.zero_grad(set_to_none=True)
    return steps, loss_sum, examples


def _step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
) -> float:
    optimizer.zero_grad(set_to_none=True)
    logits = model(xb)
    if logits.shape != yb.shape:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"model: must return logits of shape (N,), got {tuple(logits.shape)} "
            f"for a batch of {len(xb)}",
        )
    loss = loss_fn(logits, yb)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _strip_optimizer_state(model: torch.nn.Module) -> None:
    """Leave no gradients or Opacus bookkeeping on the caller's parameters."""
    for parameter in model.parameters():
        parameter.grad = None
        for attr in ("summed_grad", "grad_sample", "_forward_counter", "_current_grad_sample"):
            if hasattr(parameter, attr):
                delattr(parameter, attr)


def _check_model(model: object) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"model: must be a torch.nn.Module, got {type(model).__name__}",
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "model: has no trainable parameters")


def _tensors(
    X: np.ndarray,
    y: np.ndarray,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise TesseraError(
            ErrorCode.DATA_INVALID, "X: must be a 2-D numpy array with at least one row and column"
        )
    if not np.issubdtype(X.dtype, np.number) or not np.all(np.isfinite(X)):
        raise TesseraError(ErrorCode.DATA_INVALID, "X: must hold finite numbers only")
    if not isinstance(y, np.ndarray) or y.shape != (X.shape[0],):
        raise TesseraError(
            ErrorCode.DATA_INVALID, f"y: must be a 1-D numpy array of {X.shape[0]} labels"
        )
    if not np.issubdtype(y.dtype, np.number) and y.dtype != np.bool_:
        raise TesseraError(ErrorCode.DATA_INVALID, "y: labels must be numeric 0/1")
    if not np.all((y == 0) | (y == 1)):
        raise TesseraError(ErrorCode.DATA_INVALID, "y: labels must be 0 or 1")
    features = torch.as_tensor(np.ascontiguousarray(X), dtype=dtype, device=device)
    labels = torch.as_tensor(np.ascontiguousarray(y), dtype=dtype, device=device)
    return features, labels


def _check_positive(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"{name}: must be a finite number > 0, got {value!r}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

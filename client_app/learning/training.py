"""Local training on a site's data: DP-SGD with Opacus, or plain mini-batch SGD.

This module owns one local training run of a binary classifier that returns logits of shape
``(N,)``: binary cross-entropy with logits, plain SGD, trained in place on the caller's module.
With ``dp=True`` it runs Opacus DP-SGD (per-sample clipping to ``max_grad_norm``, Gaussian noise
at the given multiplier, Poisson sampling) and takes exactly the number of optimizer steps
:func:`privacy.accounting.plan_sampling` plans, so that the site's ledger entry
``DpStep(noise_multiplier, sample_rate, steps)`` describes what really happened.

Randomness (Poisson sampling or shuffling, DP noise) derives from ``seed`` only and never
disturbs the global torch RNG. The seed must come from a secret source held by the site and
never leave it: whoever knows it can regenerate, and so subtract, the DP noise.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from common.errors import ErrorCode, TesseraError
from privacy.accounting import plan_sampling, steps_per_epoch

# Opacus is imported lazily inside _train_dp, after privacy.accounting has imported it without
# its root-logger side effect.

#: Warnings Opacus and torch raise on every DP run that say nothing about this run.
_EXPECTED_WARNINGS = (
    r".*[Ss]ecure RNG turned off.*",  # secure_mode needs torchcsprng, not installable here
    r"Full backward hook is firing.*",  # per-sample gradient hooks on an input-free graph
)


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
) -> TrainOutcome:
    """Train ``model`` in place on ``(X, y)`` and report what was done.

    ``mean_loss`` is the example-weighted mean training loss over all steps (NaN if every
    sampled batch was empty). It is computed from the raw data and is not DP-protected: keep
    it on the site. With ``dp=False``, ``noise_multiplier`` and ``max_grad_norm`` are ignored
    and the outcome reports a noise multiplier of 0.
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
    if dp:
        _check_positive("noise_multiplier", noise_multiplier)
        _check_positive("max_grad_norm", max_grad_norm)
    parameter = next(model.parameters())
    features, labels = _tensors(X, y, dtype=parameter.dtype, device=parameter.device)

    n_train = int(features.shape[0])
    sample_rate, planned_steps = plan_sampling(
        n_train=n_train, batch_size=batch_size, epochs=epochs
    )
    loader_seed, noise_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    loader_generator = torch.Generator(device="cpu").manual_seed(loader_seed)

    was_training = model.training
    started = time.perf_counter()
    cuda_devices = [parameter.device.index or 0] if parameter.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(noise_seed)  # DP noise and any dropout draw from the forked RNG
        model.train()
        try:
            if dp:
                steps, loss_sum, examples = _train_dp(
                    model,
                    TensorDataset(features, labels),
                    sample_rate=sample_rate,
                    epochs=epochs,
                    learning_rate=learning_rate,
                    noise_multiplier=noise_multiplier,
                    max_grad_norm=max_grad_norm,
                    generator=loader_generator,
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
                    generator=loader_generator,
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
    dataset: TensorDataset,
    *,
    sample_rate: float,
    epochs: int,
    learning_rate: float,
    noise_multiplier: float,
    max_grad_norm: float,
    generator: torch.Generator,
) -> tuple[int, float, int]:
    """Opacus DP-SGD with Poisson sampling at exactly ``sample_rate``."""
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"model: not trainable with DP-SGD ({len(problems)} problem(s), first: {problems[0]})",
        )
    # Build the Poisson loader ourselves: PrivacyEngine would derive the rate from a plain
    # loader as 1 / ceil(n / batch_size), not batch_size / n as planned.
    loader = DPDataLoader(dataset, sample_rate=sample_rate, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    with warnings.catch_warnings():
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        engine = PrivacyEngine(accountant="rdp", secure_mode=False)
        hooks, dp_optimizer, dp_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=False,  # the loader above already samples (Poisson, our rate)
            grad_sample_mode="hooks",
            wrap_model=False,  # keep the caller's module and its state_dict key names
        )
        try:
            loss_fn = torch.nn.BCEWithLogitsLoss()
            steps, loss_sum, examples = 0, 0.0, 0
            for _ in range(epochs):
                for xb, yb in dp_loader:
                    loss = _step(model, dp_optimizer, loss_fn, xb, yb)
                    steps += 1
                    if len(xb):  # an empty Poisson batch still takes a (pure-noise) step
                        loss_sum += loss * len(xb)
                        examples += len(xb)
        finally:
            hooks.cleanup()
            _strip_optimizer_state(model)
    return steps, loss_sum, examples


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

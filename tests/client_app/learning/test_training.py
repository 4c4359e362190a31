"""Behaviour of local training: DP-SGD that learns, takes exactly the planned steps, draws its
noise from a fresh secret key (reproducible only from that key), leaves the caller's model
clean, and lets an audit add canary gradients."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from client_app.learning.training import TrainOutcome, train_local
from common.errors import ErrorCode, TesseraError
from privacy.accounting import DpStep, epsilon_for_history, noise_for_target, plan_sampling

DELTA = 1e-5
BATCH, EPOCHS, LR, CLIP = 64, 10, 0.5, 1.0

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the:UserWarning")


class LogisticRegression(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def data() -> Split:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.fixture(scope="module")
def sigma(data: Split) -> float:
    sample_rate, steps = plan_sampling(n_train=len(data[0]), batch_size=BATCH, epochs=EPOCHS)
    return noise_for_target(target_epsilon=3.0, delta=DELTA, sample_rate=sample_rate, steps=steps)


def _model(seed: int = 0) -> LogisticRegression:
    torch.manual_seed(seed)
    return LogisticRegression(30)


def _auc(model: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        scores = model(torch.as_tensor(X, dtype=torch.float32)).numpy()
    return float(roc_auc_score(y, scores))


def _train(
    model: torch.nn.Module, X: np.ndarray, y: np.ndarray, **overrides: object
) -> TrainOutcome:
    kwargs: dict[str, object] = {
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "learning_rate": LR,
        "dp": True,
        "noise_multiplier": 1.0,
        "max_grad_norm": CLIP,
        "seed": 7,
    }
    kwargs.update(overrides)
    return train_local(model, X, y, **kwargs)  # type: ignore[arg-type]


def test_dp_training_at_epsilon_3_learns_a_good_classifier(data: Split, sigma: float) -> None:
    X_train, X_test, y_train, y_test = data
    model = _model()
    before = _auc(model, X_test, y_test)
    rng_state = torch.get_rng_state()

    outcome = _train(model, X_train, y_train, noise_multiplier=sigma)

    sample_rate, steps = plan_sampling(n_train=len(X_train), batch_size=BATCH, epochs=EPOCHS)
    assert outcome.dp is True
    assert outcome.steps == steps == 70
    assert outcome.sample_rate == sample_rate
    assert outcome.noise_multiplier == sigma
    assert 0 < outcome.mean_loss < 1 and outcome.seconds > 0
    assert _auc(model, X_test, y_test) > 0.95 > before
    ledger = [DpStep(outcome.noise_multiplier, outcome.sample_rate, outcome.steps)]
    assert epsilon_for_history(ledger, delta=DELTA) <= 3.0
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched


def test_dp_training_leaves_the_callers_model_clean_and_retrainable(data: Split) -> None:
    X_train, _, y_train, _ = data
    model = _model()
    weight = model.linear.weight
    keys = list(model.state_dict())
    model.eval()

    _train(model, X_train, y_train, epochs=1)
    _train(model, X_train, y_train, epochs=1, seed=8)  # a second round on the same module

    assert list(model.state_dict()) == keys == ["linear.weight", "linear.bias"]
    assert model.linear.weight is weight
    assert not model.training
    assert not model.linear._forward_hooks and not model.linear._backward_hooks
    for parameter in model.parameters():
        assert parameter.grad is None
        assert not hasattr(parameter, "grad_sample")
        assert not hasattr(parameter, "summed_grad")


def test_dp_clips_each_update_to_the_grad_norm(data: Split) -> None:
    X_train, _, y_train, _ = data
    clipped, plain = _model(), _model()
    start = torch.cat([p.detach().flatten().clone() for p in clipped.parameters()])

    outcome = _train(clipped, X_train, y_train, noise_multiplier=1e-6, max_grad_norm=1e-3)
    _train(plain, X_train, y_train, dp=False)

    def moved(model: torch.nn.Module) -> float:
        end = torch.cat([p.detach().flatten() for p in model.parameters()])
        return float(torch.linalg.vector_norm(end - start))

    # Each step moves by at most lr * clip * (batch size / expected batch size); Poisson
    # batches here stay well under twice their expected size.
    assert moved(clipped) <= outcome.steps * LR * 1e-3 * 2
    assert moved(plain) > 10 * moved(clipped)


def test_plain_training_takes_the_same_steps_and_learns(data: Split) -> None:
    X_train, X_test, y_train, y_test = data
    model = _model()

    outcome = _train(model, X_train, y_train, dp=False, noise_multiplier=0.0)

    assert outcome.dp is False
    assert outcome.noise_multiplier == 0.0
    assert outcome.steps == plan_sampling(n_train=len(X_train), batch_size=BATCH, epochs=EPOCHS)[1]
    assert _auc(model, X_test, y_test) > 0.97


def test_plain_training_is_reproducible_from_its_seed(data: Split) -> None:
    X_train, _, y_train, _ = data
    first, second, third = _model(), _model(), _model()

    a = _train(first, X_train, y_train, dp=False, epochs=2, seed=11)
    b = _train(second, X_train, y_train, dp=False, epochs=2, seed=11)
    _train(third, X_train, y_train, dp=False, epochs=2, seed=12)

    for p, q, r in zip(first.parameters(), second.parameters(), third.parameters(), strict=True):
        assert torch.equal(p, q)
        assert not torch.equal(p, r)
    assert a.mean_loss == b.mean_loss


def test_dp_training_is_reproducible_only_from_its_noise_key(data: Split) -> None:
    X_train, _, y_train, _ = data
    first, second, third = _model(), _model(), _model()
    key = bytes(range(32))

    a = _train(first, X_train, y_train, epochs=2, seed=11, noise_key=key)
    b = _train(second, X_train, y_train, epochs=2, seed=12, noise_key=key)  # seed is no key
    _train(third, X_train, y_train, epochs=2, seed=11, noise_key=bytes(range(1, 33)))

    for p, q, r in zip(first.parameters(), second.parameters(), third.parameters(), strict=True):
        assert torch.equal(p, q)
        assert not torch.equal(p, r)
    assert a.mean_loss == b.mean_loss


def test_dp_noise_is_fresh_each_run_whatever_the_torch_and_training_seeds(data: Split) -> None:
    X_train, _, y_train, _ = data
    models = [_model(), _model()]

    for model in models:
        torch.manual_seed(0)
        np.random.seed(0)
        _train(model, X_train, y_train, epochs=1, seed=5)

    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert not torch.equal(p, q)


def test_dp_noise_and_sampling_draw_nothing_from_torch_or_numpy_generators(
    data: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    X_train, _, y_train, _ = data

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("DP-SGD drew from a non-cryptographic generator")

    for name in ("normal", "randn", "rand", "randint", "randperm", "bernoulli"):
        monkeypatch.setattr(torch, name, forbidden)
    monkeypatch.setattr(np.random, "default_rng", forbidden)
    model = _model()
    start = [p.detach().clone() for p in model.parameters()]

    outcome = _train(model, X_train, y_train, epochs=2)

    assert outcome.steps == 14
    assert all(not torch.equal(p, s) for p, s in zip(model.parameters(), start, strict=True))


def test_dp_noise_has_the_planned_scale(data: Split) -> None:
    # Inputs of zeros and no bias: every per-example gradient is 0, so each step moves the
    # weights by exactly -lr * noise / expected batch, noise ~ N(0, (sigma * clip)^2).
    X_train, _, y_train, _ = data
    X = np.zeros_like(X_train)
    model = torch.nn.Sequential(torch.nn.Linear(30, 1, bias=False), torch.nn.Flatten(0))
    torch.nn.init.zeros_(model[0].weight)
    sigma, clip, lr, epochs = 2.0, 0.5, 1.0, 50

    outcome = _train(model, X, y_train, epochs=epochs, noise_multiplier=sigma,
                     max_grad_norm=clip, learning_rate=lr)

    expected_batch = round(outcome.sample_rate * len(X))
    # Sum of `steps` independent steps: N(0, steps * (lr * sigma * clip / batch)^2) per weight.
    per_weight_std = lr * sigma * clip / expected_batch * np.sqrt(outcome.steps)
    moved = model[0].weight.detach().double().flatten() / per_weight_std
    assert abs(float(moved.mean())) < 4 / np.sqrt(30)
    assert 0.6 < float(moved.std()) < 1.4


def test_extra_gradients_join_the_noised_sum_at_every_step(data: Split) -> None:
    X_train, _, y_train, _ = data
    plain, pushed = _model(), _model()
    key = bytes(32)
    calls: list[int] = []

    def push_bias(step: int) -> list[torch.Tensor]:
        calls.append(step)
        return [torch.zeros(1, 30), torch.full((1,), -1.0)]  # one extra example, norm 1

    outcome = _train(plain, X_train, y_train, epochs=2, noise_key=key)
    _train(pushed, X_train, y_train, epochs=2, noise_key=key, extra_gradients=push_bias)

    assert calls == list(range(outcome.steps))
    shift = float((pushed.linear.bias - plain.linear.bias).detach())
    # Same key, same noise and batches: the bias moved further by about lr / batch per step.
    assert shift > 0
    assert shift == pytest.approx(outcome.steps * LR / round(outcome.sample_rate * len(X_train)),
                                  rel=0.3)


def test_malformed_extra_gradients_are_refused(data: Split) -> None:
    X_train, _, y_train, _ = data
    with pytest.raises(TesseraError, match="extra_gradients") as info:
        _train(_model(), X_train, y_train, epochs=1,
               extra_gradients=lambda step: [torch.zeros(3)])
    assert info.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(TesseraError) as info:
        _train(_model(), X_train, y_train, dp=False, extra_gradients=lambda step: None)
    assert info.value.message.startswith("extra_gradients")
    with pytest.raises(TesseraError) as info:
        _train(_model(), X_train, y_train, noise_key=b"short")
    assert info.value.message.startswith("noise_key")


@pytest.mark.parametrize(
    ("n", "batch", "epochs"),
    [(5, 1, 4), (20, 64, 3), (50, 7, 2)],  # empty Poisson batches; full batch; uneven split
)
def test_steps_match_the_privacy_plan_at_any_size(n: int, batch: int, epochs: int) -> None:
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 3))
    y = (np.arange(n) % 2).astype(np.int64)
    for dp in (True, False):
        model = LogisticRegression(3)
        outcome = _train(model, X, y, batch_size=batch, epochs=epochs, dp=dp)

        assert (outcome.sample_rate, outcome.steps) == plan_sampling(
            n_train=n, batch_size=batch, epochs=epochs
        )
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_invalid_inputs_are_refused_naming_the_problem(data: Split) -> None:
    X_train, _, y_train, _ = data
    cases: list[tuple[dict[str, object], ErrorCode, str]] = [
        ({"X": np.where(X_train == X_train[0, 0], np.nan, X_train)}, ErrorCode.DATA_INVALID, "X"),
        ({"y": y_train + 1}, ErrorCode.DATA_INVALID, "y"),
        ({"y": y_train[:-1]}, ErrorCode.DATA_INVALID, "y"),
        ({"noise_multiplier": 0.0}, ErrorCode.CONFIG_INVALID, "noise_multiplier"),
        ({"max_grad_norm": -1.0}, ErrorCode.CONFIG_INVALID, "max_grad_norm"),
        ({"epochs": 0}, ErrorCode.CONFIG_INVALID, "epochs"),
        ({"learning_rate": float("inf")}, ErrorCode.CONFIG_INVALID, "learning_rate"),
        ({"seed": -1}, ErrorCode.CONFIG_INVALID, "seed"),
    ]
    for overrides, code, name in cases:
        X = overrides.pop("X", X_train)
        y = overrides.pop("y", y_train)
        with pytest.raises(TesseraError) as info:
            _train(_model(), X, y, **overrides)  # type: ignore[arg-type]
        assert info.value.code is code
        assert info.value.message.startswith(name)


def test_models_dp_cannot_train_are_refused(data: Split) -> None:
    X_train, _, y_train, _ = data
    column = torch.nn.Sequential(torch.nn.Linear(30, 1))  # logits of shape (N, 1)
    with pytest.raises(TesseraError, match=r"shape \(N,\)") as info:
        _train(column, X_train, y_train, epochs=1)
    assert info.value.code is ErrorCode.CONFIG_INVALID

    batch_norm = torch.nn.Sequential(
        torch.nn.BatchNorm1d(30), torch.nn.Linear(30, 1), torch.nn.Flatten(0)
    )
    with pytest.raises(TesseraError, match="not trainable with DP-SGD") as info:
        _train(batch_norm, X_train, y_train, epochs=1)
    assert info.value.code is ErrorCode.CONFIG_INVALID


def test_importing_training_leaves_the_root_logger_alone() -> None:
    # Opacus calls logging.basicConfig on import, which doubles an application's log lines.
    code = ("import logging, client_app.learning.training, opacus; "
            "print(len(logging.getLogger().handlers))")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "0"

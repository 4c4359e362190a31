"""Behaviour of local training: DP-SGD that learns, takes exactly the planned steps, is
reproducible from its seed and leaves the caller's model clean."""

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


@pytest.mark.parametrize("dp", [True, False])
def test_same_seed_gives_the_same_weights(data: Split, dp: bool) -> None:
    X_train, _, y_train, _ = data
    first, second, third = _model(), _model(), _model()

    a = _train(first, X_train, y_train, dp=dp, epochs=2, seed=11)
    b = _train(second, X_train, y_train, dp=dp, epochs=2, seed=11)
    _train(third, X_train, y_train, dp=dp, epochs=2, seed=12)

    for p, q, r in zip(first.parameters(), second.parameters(), third.parameters(), strict=True):
        assert torch.equal(p, q)
        assert not torch.equal(p, r)
    assert a.mean_loss == b.mean_loss


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

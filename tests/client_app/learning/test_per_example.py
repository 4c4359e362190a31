"""Per-example gradients computed directly equal Opacus's per-sample gradients, for the model
zoo's closed forms and for the vmap fallback (an arbitrary module and the image CNN), and a
fast DP-SGD step equals an Opacus one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.grad_sample.utils import prepare_module

from client_app.learning.fast_dp import clipped_sum
from client_app.learning.per_example import per_example_gradients
from client_app.learning.training import train_local
from common.errors import ErrorCode, TesseraError
from common.models import build_model
from common.plan import ModelSpec

pytestmark = pytest.mark.filterwarnings(
    "ignore:Full backward hook is firing:UserWarning",
    "ignore:.*[Ss]ecure RNG turned off.*:UserWarning",
    "ignore:Optimal order is the:UserWarning",
)

FEATURES = 9


class Squeezed(torch.nn.Module):
    """A model of no zoo type: two linear layers with a tanh, logits squeezed."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(FEATURES, 5)
        self.b = torch.nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x))).squeeze(-1)


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(3)
    return {
        "logreg": build_model(ModelSpec(kind="logreg"), n_features=FEATURES, seed=1),
        "mlp": build_model(ModelSpec(kind="mlp", hidden=8, groups=2), n_features=FEATURES,
                           seed=2),
        "other": Squeezed(),
        # FEATURES pixels read as a 3x3 image.
        "cnn": build_model(ModelSpec(kind="cnn", hidden=8, groups=2), n_features=FEATURES,
                           seed=4),
    }


def _batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.normal(size=(n, FEATURES)) * 2.0, dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 2, size=n), dtype=torch.float32)
    return x, y


def _opacus_grad_samples(model: torch.nn.Module, x: torch.Tensor,
                         y: torch.Tensor) -> list[torch.Tensor]:
    hooks = prepare_module(model, grad_sample_mode="hooks", wrap_model=False,
                           batch_first=True, loss_reduction="mean")
    try:
        loss = torch.nn.BCEWithLogitsLoss()(model(x), y)
        loss.backward()
        return [p.grad_sample.detach().clone() for p in model.parameters()]
    finally:
        hooks.cleanup()
        for p in model.parameters():
            p.grad = None
            for attr in ("grad_sample", "_forward_counter", "_current_grad_sample"):
                if hasattr(p, attr):
                    delattr(p, attr)


@pytest.mark.parametrize("kind", ["logreg", "mlp", "other", "cnn"])
def test_per_example_gradients_equal_opacus_per_sample_gradients(kind: str) -> None:
    model = _models()[kind]
    x, y = _batch(37)
    direct, losses = per_example_gradients(model, x, y)
    reference = _opacus_grad_samples(model, x, y)
    assert len(direct) == len(reference)
    for mine, theirs in zip(direct, reference, strict=True):
        assert mine.shape == theirs.shape
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        model(x), y, reduction="none")
    torch.testing.assert_close(losses, expected.detach())
    # The gradients are not trivially small: the comparison above has something to compare.
    assert max(float(g.abs().max()) for g in direct) > 1e-2


@pytest.mark.parametrize("kind", ["logreg", "mlp", "other", "cnn"])
def test_an_empty_batch_has_empty_gradients_and_a_zero_clipped_sum(kind: str) -> None:
    model = _models()[kind]
    x, y = _batch(0)
    grads, losses = per_example_gradients(model, x, y)
    assert [g.shape[1:] for g in grads] == [p.shape for p in model.parameters()]
    assert all(g.shape[0] == 0 for g in grads) and losses.shape == (0,)
    summed = clipped_sum(grads, max_grad_norm=1.0)
    assert all(float(s.abs().sum()) == 0.0 for s in summed)


def test_clipping_bounds_each_examples_joint_norm() -> None:
    model = _models()["mlp"]
    x, y = _batch(1, seed=4)
    grads, _ = per_example_gradients(model, x * 50, y)
    norm = float(torch.cat([g.reshape(-1) for g in grads]).norm())
    assert norm > 0.5  # the clip below binds
    summed = clipped_sum(grads, max_grad_norm=0.1)
    clipped = float(torch.cat([s.reshape(-1) for s in summed]).norm())
    assert clipped == pytest.approx(0.1, rel=1e-4)


def test_a_model_with_column_logits_is_refused() -> None:
    column = torch.nn.Linear(FEATURES, 1)  # (N, 1), not (N,)
    x, y = _batch(4)
    with pytest.raises(TesseraError, match=r"shape \(N,\)") as info:
        per_example_gradients(column, x, y)
    assert info.value.code is ErrorCode.CONFIG_INVALID


def _trained(kind: str, engine: str, *, key: bytes, extra: bool = False) -> np.ndarray:
    model = _models()[kind]
    rng = np.random.default_rng(11)
    X = rng.normal(size=(300, FEATURES))
    y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(np.float64)

    def canary(step: int) -> list[torch.Tensor] | None:
        if step % 2:
            return None
        return [torch.full_like(p, 0.01) for p in model.parameters()]

    train_local(model, X, y, epochs=2, batch_size=32, learning_rate=0.3, dp=True,
                noise_multiplier=0.8, max_grad_norm=0.7, seed=5, noise_key=key,
                extra_gradients=canary if extra else None, released_rows=290, engine=engine)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


@pytest.mark.parametrize("kind", ["logreg", "mlp", "other", "cnn"])
def test_fast_training_equals_opacus_training_given_the_same_key(kind: str) -> None:
    key = bytes(range(32))
    fast = _trained(kind, "fast", key=key, extra=True)
    opacus = _trained(kind, "opacus", key=key, extra=True)
    np.testing.assert_allclose(fast, opacus, rtol=1e-4, atol=1e-5)
    start = torch.cat([p.detach().reshape(-1) for p in _models()[kind].parameters()]).numpy()
    assert np.abs(fast - start).max() > 1e-2  # training moved the model
    other = _trained(kind, "fast", key=bytes(range(1, 33)))
    assert np.abs(fast - other).max() > 1e-3  # and the key, not the engine, set the noise


def test_an_unknown_engine_is_refused() -> None:
    model = _models()["logreg"]
    X, y = np.ones((4, FEATURES)), np.array([0.0, 1.0, 0.0, 1.0])
    with pytest.raises(TesseraError) as info:
        train_local(model, X, y, epochs=1, batch_size=2, learning_rate=0.1, dp=True,
                    noise_multiplier=1.0, max_grad_norm=1.0, seed=0, engine="hooks")
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith("engine")


def test_cnn_per_example_gradients_on_8x8_images_equal_vmaps() -> None:
    from client_app.learning.per_example import _vmapped

    model = build_model(ModelSpec(kind="cnn", hidden=16, groups=4), n_features=64, seed=7)
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.uniform(-1, 1, size=(12, 64)), dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 2, size=12), dtype=torch.float32)
    direct, losses = per_example_gradients(model, x, y)
    mapped, mapped_losses = _vmapped(model, x, y)
    for ours, theirs in zip(direct, mapped, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses, mapped_losses)
    assert all(p.grad is None for p in model.parameters())  # the model's own grads untouched

"""Permutation importance at a site: what the final model relies on, measured on held-out rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_app.agent.envelopes import seal_vector
from client_app.agent.evaluation import importance_metrics
from client_app.agent.signing import sign_envelope
from client_app.agent.site_agent import SiteAgent
from client_app.custody.identity import signing_key
from client_app.custody.vault import unlock_vault
from client_app.learning.importance import permutation_importance
from client_app.learning.training import train_local
from common.layout import TensorSlot
from common.models import build_model, model_to_vector
from common.plan import ModelSpec, bundled_plan_path, load_plan, override, statistics_length
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from server.envelopes import contribution_set
from server.tasks import sign_task
from tessera import local_federation

FEATURES = ("strong", "weak", "noise")
PASS = "importance test passphrase"


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised rows whose label depends strongly on column 0, weakly on 1, not on 2."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    logit = 2.5 * X[:, 0] + 0.7 * X[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def trained() -> tuple[object, np.ndarray, np.ndarray]:
    """A logistic regression trained (plain SGD) on 2000 rows; 400 fresh held-out rows."""
    model = build_model(ModelSpec(kind="logreg"), n_features=3, seed=1)
    X, y = _data(2000, seed=0)
    train_local(model, X, y.astype(np.float64), epochs=20, batch_size=64, learning_rate=0.1,
                dp=False, noise_multiplier=0.0, max_grad_norm=1.0, seed=5)
    X_test, y_test = _data(400, seed=1)
    return model, X_test, y_test


def test_strongest_feature_ranks_first_and_pure_noise_gets_about_zero(trained) -> None:
    model, X, y = trained
    result = permutation_importance(model, X, y, FEATURES, seed=7)
    assert result.n == 400 and result.repeats == 5
    assert result.auc is not None and result.auc > 0.8
    drops, rises = result.auc_drop, result.log_loss_increase
    assert drops["strong"] > drops["weak"] > 0.01
    assert rises["strong"] > rises["weak"] > 0.01
    assert drops["strong"] > 0.15
    assert abs(drops["noise"]) < 0.01 and abs(rises["noise"]) < 0.01


def test_a_feature_the_model_ignores_has_exactly_zero_importance(trained) -> None:
    model, X, y = trained
    ignored = build_model(ModelSpec(kind="logreg"), n_features=3, seed=1)
    ignored.load_state_dict(model.state_dict())
    ignored.linear.weight.data[0, 2] = 0.0
    result = permutation_importance(ignored, X, y, FEATURES, seed=7)
    assert result.auc_drop["noise"] == 0.0 and result.log_loss_increase["noise"] == 0.0


def test_shuffles_are_reproducible_from_the_study_seed(trained) -> None:
    model, X, y = trained
    first = permutation_importance(model, X, y, FEATURES, seed=11)
    assert permutation_importance(model, X, y, FEATURES, seed=11) == first
    other = permutation_importance(model, X, y, FEATURES, seed=12)
    assert other.auc_drop != first.auc_drop


def test_the_reply_carries_every_feature_and_the_row_count(trained) -> None:
    model, X, y = trained
    metrics = importance_metrics(permutation_importance(model, X, y, FEATURES, seed=3,
                                                        repeats=2))
    assert set(metrics) == {"importance_n", "importance_repeats",
                            *(f"importance_auc:{f}" for f in FEATURES),
                            *(f"importance_log_loss:{f}" for f in FEATURES)}
    assert metrics["importance_n"] == 400 and metrics["importance_repeats"] == 2


def test_held_out_rows_of_one_class_send_log_loss_but_no_auc(trained) -> None:
    model, X, _ = trained
    result = permutation_importance(model, X[:50], np.zeros(50, dtype=np.int64), FEATURES,
                                    seed=3)
    assert result.auc is None and set(result.auc_drop.values()) == {None}
    metrics = importance_metrics(result)
    assert not any(key.startswith("importance_auc:") for key in metrics)
    assert len([k for k in metrics if k.startswith("importance_log_loss:")]) == 3


def test_the_agent_measures_importance_only_for_a_verified_final_aggregate(
        tmp_path: Path) -> None:
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1, he_enabled=False)
    fed = local_federation.build(tmp_path / "w", plan, sites=2, ceilings={}, passphrase=PASS)
    vault = unlock_vault(fed.sites[0], PASS)
    agent = SiteAgent(vault)
    values, layout = model_to_vector(build_model(plan.model, n_features=len(
        plan.dataset.features), seed=plan.seed))
    # One site's own (signed) weights dressed up as the final model: not a sum of two sites.
    own = seal_vector(kind=agent_pb2.ENVELOPE_WEIGHTS, plan_hash=fed.plan_hash, run_id="r",
                      round_=1, site="site-1", example_count=1, values=values, layout=layout,
                      secret_context=None)
    key = signing_key(vault)
    assert key is not None
    sign_envelope(own, key)
    coordinator = SigningKey(bytes.fromhex(
        (fed.coordinator_kit / "signing.key").read_text().strip()))
    request = agent_pb2.TaskRequest(kind=agent_pb2.TASK_IMPORTANCE, plan_hash=fed.plan_hash,
                                    plan_toml=fed.plan_path.read_bytes(), round=1, run_id="r")
    request.model.CopyFrom(contribution_set(agent_pb2.ENVELOPE_WEIGHTS, 1, [own]))
    features = statistics_length(plan)
    stats = seal_vector(kind=agent_pb2.ENVELOPE_STATS, plan_hash=fed.plan_hash, run_id="r",
                        round_=0, site="site-1", example_count=1, values=np.ones(features),
                        layout=[TensorSlot("feature_sums", (features,), 0, features)],
                        secret_context=None)
    sign_envelope(stats, key)
    request.stats.CopyFrom(contribution_set(agent_pb2.ENVELOPE_STATS, 0, [stats]))
    reply = agent.handle(sign_task(request, coordinator))
    assert not reply.ok and reply.error_code == "permission_denied"
    assert "1 site(s) contributed, the plan needs at least 2" in reply.reason
    assert not reply.metrics

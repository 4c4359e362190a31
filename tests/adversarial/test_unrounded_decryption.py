"""Li-Micciancio: an exact decryption of a ciphertext whose randomness the coordinator knows
reveals the secret key. Before the fix (protocol v1) a site returned the decrypted final
model, statistics and counts unrounded. Now every decrypted real value that leaves a site is
noise-flooded far above the decryption error, then rounded to the plan's precision; counts
are rounded to whole numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from client_app.custody.ckks_keys import ckks_params, load_secret_context
from common.eval_partition import midpoint_sums
from privacy.ckks import add_encrypted, decrypt_vector, encrypt_vector, generate_keys
from privacy.flooding import FLOODING_SECURITY_BITS, error_bound, flooding_sigma
from protos.tessera.v1 import agent_pb2
from tests.adversarial.honest_run import HonestRun, honest_run

W, S = agent_pb2.ENVELOPE_WEIGHTS, agent_pb2.ENVELOPE_STATS


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HonestRun:
    return honest_run(tmp_path_factory.mktemp("flood") / "w", rounds=1)


def _exact_mean(run: HonestRun, kind: int, round_: int, length: int) -> np.ndarray:
    """What an unflooded release would carry: the decrypted sum over the examples."""
    secret = load_secret_context(run.vaults["site-1"], run.fed.plan_hash)
    cset = run.full_set(kind, round_)
    total = add_encrypted(secret, [list(e.ciphertexts) for e in cset.envelopes])
    examples = sum(e.example_count for e in cset.envelopes)
    return decrypt_vector(secret, total, length=length) / examples


def test_released_model_is_flooded_and_rounded(run: HonestRun) -> None:
    [released] = [reply.model for _, req, reply in run.exchanges
                  if req.kind == agent_pb2.TASK_RELEASE and reply.ok]
    values = np.asarray(released.values)
    decimals = run.plan.release_policy.decimals
    assert np.allclose(values * 10**decimals, np.round(values * 10**decimals), atol=1e-6)
    exact = _exact_mean(run, W, 1, values.size)
    gap = np.abs(values - exact)
    examples = sum(e.example_count for e in run.full_set(W, 1).envelopes)
    params = ckks_params(run.plan)
    sigma = flooding_sigma(params, contributors=3, released=values.size) / examples
    bound = error_bound(params, contributors=3) / examples
    # Not the exact decryption: the released values differ from it by the flooding (and the
    # rounding), far more than any decryption error...
    assert gap.max() > 1000 * bound
    # ...and by no more than the flooding and rounding allow.
    assert gap.max() < 8 * sigma + 0.5 * 10**-decimals


def test_opened_counts_are_whole_numbers_and_derived_sums(run: HonestRun) -> None:
    [opened] = [reply.counts for _, req, reply in run.exchanges
                if req.kind == agent_pb2.TASK_OPEN_COUNTS and reply.ok]
    assert run.plan.privacy.dp
    for hist in opened.histograms:  # uint64 on the wire: whole numbers by construction
        assert all(p + q == 0 or p + q >= 10 for p, q in zip(hist.pos, hist.neg, strict=True))
    # Under DP the decrypted real sums are not released at all: log loss and Brier are
    # recomputed from the released whole-number histogram, so no decryption error survives.
    [overall] = [h for h in opened.histograms if h.group == ""]
    log_loss, brier = midpoint_sums(np.asarray(overall.pos), np.asarray(overall.neg))
    assert (opened.log_loss_sum, opened.brier_sum) == (log_loss, brier)
    assert opened.n == sum(overall.pos) + sum(overall.neg)


def test_opened_counts_without_dp_are_flooded_and_rounded(tmp_path_factory:
                                                          pytest.TempPathFactory) -> None:
    plain = honest_run(tmp_path_factory.mktemp("flood-nodp") / "w", rounds=1, dp=False)
    [opened] = [reply.counts for _, req, reply in plain.exchanges
                if req.kind == agent_pb2.TASK_OPEN_COUNTS and reply.ok]
    decimals = plain.plan.release_policy.decimals
    for value in (opened.log_loss_sum, opened.brier_sum):
        assert value * 10**decimals == pytest.approx(round(value * 10**decimals), abs=1e-6)
    exact = _exact_counts_sums(plain)
    gaps = np.abs(np.array([opened.log_loss_sum, opened.brier_sum]) - exact)
    assert gaps.max() > 0  # flooded: not the exact decryption


def _exact_counts_sums(run: HonestRun) -> np.ndarray:
    """The log-loss and Brier sums an unflooded opening of the final counts would carry."""
    secret = load_secret_context(run.vaults["site-1"], run.fed.plan_hash)
    cset = run.full_set(agent_pb2.ENVELOPE_EVAL, run.plan.training.rounds)
    total = add_encrypted(secret, [list(e.ciphertexts) for e in cset.envelopes])
    length = cset.envelopes[0].layout[-1].offset + 1
    return decrypt_vector(secret, total, length=length)[-3:-1]


@pytest.mark.parametrize("contributors", [1, 3, 10])
def test_error_bound_covers_measured_decryption_errors(contributors: int) -> None:
    params = ckks_params(honest_plan())
    keys = generate_keys(params)
    rng = np.random.default_rng(contributors)
    vectors = [rng.uniform(-1, 1, params.slots) for _ in range(contributors)]
    total = add_encrypted(keys.evaluation_context,
                          [encrypt_vector(keys.secret_context, v) for v in vectors])
    error = decrypt_vector(keys.secret_context, total, length=params.slots) - sum(vectors)
    assert np.abs(error).max() < error_bound(params, contributors=contributors)


def test_flooding_gives_the_documented_statistical_security() -> None:
    params = ckks_params(honest_plan())
    for released, contributors in ((31, 3), (60, 10), (2, 2)):
        bound = error_bound(params, contributors=contributors)
        sigma = flooding_sigma(params, contributors=contributors, released=released)
        # KL divergence between the released distributions for any two errors within bound.
        divergence = released * (2 * bound) ** 2 / (2 * sigma**2)
        assert divergence <= 2.0 ** -(FLOODING_SECURITY_BITS + 1) * (1 + 1e-9)
        assert math.isfinite(sigma) and sigma < 1e-3  # and it stays below released precision


def honest_plan():
    from common.plan import bundled_plan_path, load_plan

    return load_plan(bundled_plan_path("breast_cancer"))

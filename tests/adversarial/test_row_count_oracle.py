"""Row counts as a membership oracle: before the fix each site told the coordinator its exact
numbers of training and held-out rows in every hello, as every contribution's example count
and through DP-SGD's sample rate, so an adversary who knows every other record learned
whether one patient is in the data. Now the counts are a Gaussian release in the ledger,
drawn once per dataset version and reused: asking again, in run after run, neither spends
budget nor yields a fresh draw to average away.
"""

from __future__ import annotations

import pytest

from client_app.learning.site_data import load_split
from client_app.store.site_store import SiteStore
from protos.tessera.v1 import agent_pb2
from tests.adversarial.honest_run import RUN, HonestRun, fresh_run, honest_run

S, W = agent_pb2.ENVELOPE_STATS, agent_pb2.ENVELOPE_WEIGHTS


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HonestRun:
    return honest_run(tmp_path_factory.mktemp("rows") / "w", rounds=1)


def test_hello_tells_no_counts_under_dp(run: HonestRun) -> None:
    hellos = [reply for _, req, reply in run.exchanges if req.kind == agent_pb2.TASK_HELLO]
    assert hellos and all(reply.ok and not reply.metrics for reply in hellos)


def test_counts_are_released_once_and_reused_by_later_runs(run: HonestRun) -> None:
    first = {e.site: e.example_count for e in run.full_set(S, 0).envelopes}
    again = fresh_run(run, "rows-again", train_rounds=1)
    second = {e.site: e.example_count for e in again.sets[(S, 0)].envelopes}
    assert first == second  # the same released counts, not a fresh draw
    trained = {e.site: e.example_count for e in again.sets[(W, 1)].envelopes}
    assert trained == first  # each update is weighted by the released count
    for site, vault in run.vaults.items():
        with SiteStore.open(vault.site) as store:
            entries = [e for e in store.ledger() if e.kind == "row_counts"]
        assert [(e.run_id, e.round) for e in entries] == [(RUN, 0)], site
        assert entries[0].mechanism.to_json() == {
            "mechanism": "gaussian", "count": 1,
            "noise_multiplier": run.plan.statistics_policy.count_noise_multiplier}


def test_released_counts_are_noisy_around_the_true_ones(run: HonestRun) -> None:
    released = {e.site: e.example_count for e in run.full_set(S, 0).envelopes}
    gaps = []
    for site, vault in run.vaults.items():
        exact = len(load_split(vault, run.plan).train.y)
        gaps.append(released[site] - exact)
    z = run.plan.statistics_policy.count_noise_multiplier
    assert all(abs(gap) <= 6 * z for gap in gaps)  # within six standard deviations
    # Three draws of N(0, 8^2), rounded, are all exactly 0 with probability about 1e-4.
    assert any(gap != 0 for gap in gaps)


def test_training_reports_only_figures_derived_from_the_released_count(run: HonestRun) -> None:
    released = {e.site: e.example_count for e in run.full_set(S, 0).envelopes}
    batch = run.plan.training.batch_size
    for site, req, reply in run.exchanges:
        if req.kind == agent_pb2.TASK_TRAIN and reply.ok:
            assert reply.metrics["sample_rate"] == pytest.approx(min(1.0, batch / released[site]))

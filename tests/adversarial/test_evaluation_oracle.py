"""A site answering as an oracle over its own rows: before the fix, every evaluation, feature
importance and leave-one-site-out answer left the site exactly and outside the ledger, so a
coordinator could ask (in run after run) as often as the training budget allowed and read
the held-out rows off the answers. Now each answer is a Gaussian mechanism checked against
the ceiling and recorded in the ledger before it leaves; past the ceiling the site refuses
and sends nothing.
"""

from __future__ import annotations

import pytest

from client_app.store.site_store import SiteStore
from protos.tessera.v1 import agent_pb2
from tests.adversarial.honest_run import RUN, HonestRun, fresh_run, honest_run

S, W = agent_pb2.ENVELOPE_STATS, agent_pb2.ENVELOPE_WEIGHTS


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HonestRun:
    return honest_run(tmp_path_factory.mktemp("oracle") / "w", rounds=2)


def test_every_evaluation_answer_is_a_ledgered_gaussian_release(run: HonestRun) -> None:
    rounds = run.plan.training.rounds
    for site, vault in run.vaults.items():
        with SiteStore.open(vault.site) as store:
            entries = [e for e in store.ledger() if e.run_id == RUN]
        evaluated = [e for e in entries if e.kind == "evaluation_counts"]
        assert [e.round for e in evaluated] == list(range(1, rounds + 1)), site
        assert [e.kind for e in entries if e.kind == "importance"] == ["importance"], site
        for entry in evaluated:
            assert entry.mechanism.to_json() == {
                "mechanism": "gaussian", "count": 1,
                "noise_multiplier": run.plan.evaluation_policy.noise_multiplier}
        assert entries[-1].epsilon_cumulative <= run.plan.privacy.target_epsilon + 1e-9


def _ledger(run: HonestRun, site: str) -> list[tuple[str, int, str]]:
    with SiteStore.open(run.vaults[site].site) as store:
        return [(e.kind, e.round, e.run_id) for e in store.ledger()]


def _cap_at_current(run: HonestRun, site: str) -> None:
    """Lower the site's ceiling to what its dataset has spent (lowering needs no confirm)."""
    with SiteStore.open(run.vaults[site].site) as store:
        spent = store.ledger()[-1].epsilon_cumulative
        store.set_ceiling(spent + 1e-6, actor="operator")


def test_an_evaluation_past_the_ceiling_is_refused_and_nothing_leaves(run: HonestRun) -> None:
    fresh = fresh_run(run, "oracle-eval", train_rounds=1)
    _cap_at_current(run, "site-1")
    before = _ledger(run, "site-1")
    reply = run.agent("site-1").handle(run.task(
        agent_pb2.TASK_EVALUATE, 1, run_id=fresh.run_id, model=fresh.sets[(W, 1)],
        stats=fresh.sets[(S, 0)]))
    assert not reply.ok and reply.error_code == "budget_exceeded"
    assert "ceiling" in reply.reason
    assert not reply.HasField("envelope") and not reply.HasField("counts")
    assert _ledger(run, "site-1") == before
    with SiteStore.open(run.vaults["site-1"].site) as store:
        assert store.events(kind="budget_refusal")
    # Another site, under its ceiling, still answers and pays for it.
    other = run.agent("site-2").handle(run.task(
        agent_pb2.TASK_EVALUATE, 1, run_id=fresh.run_id, model=fresh.sets[(W, 1)],
        stats=fresh.sets[(S, 0)]))
    assert other.ok, other.reason
    assert _ledger(run, "site-2")[-1] == ("evaluation_counts", 1, fresh.run_id)

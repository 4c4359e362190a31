"""A coordinator asking sites for drift statistics: only what the approved plan declares,
only when the operator allows it, and never a fresh draw of the same data to average away.

Asking twice for the same plan and dataset version does not spend twice: the site repeats
the answer it released (post-processing); a new dataset version is a new release. The final
model's score histogram comes only with a plan that declares ``scores``, and the ledger entry
counts every histogram of the release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_app.agent.drift import DRIFT_REPEATED
from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.governance.drift_sharing import set_drift_sharing
from client_app.governance.studies import decide, receive_plan
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode
from common.plan import StudyPlan, plan_hash, plan_to_toml
from privacy.dp_drift import SCORES_METRIC
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from protos.wire import DRIFT_PREFIX
from tessera.local_federation import LocalFederation
from tests.drift_federation import PASSPHRASE, build, drift_plan, register_shifted
from tests.federation import signed_task


@pytest.fixture()
def fed(tmp_path: Path) -> LocalFederation:
    return build(tmp_path / "work", drift_plan(he=False), sites=2)


def _key(fed: LocalFederation) -> SigningKey:
    text = (fed.coordinator_kit / "signing.key").read_text(encoding="ascii").strip()
    return SigningKey(bytes.fromhex(text))


def _ask(fed: LocalFederation, plan: StudyPlan, *, run_id: str = "drift-1",
         round_: int = 0) -> agent_pb2.TaskReply:
    agent = SiteAgent(unlock_vault(fed.sites[0], PASSPHRASE))
    return agent.handle(signed_task(_key(fed), agent_pb2.TASK_DRIFT, plan, run_id=run_id,
                                    round_=round_))


def _drift_entries(fed: LocalFederation) -> list[str]:
    with SiteStore.open(fed.sites[0]) as store:
        return [e.dataset_version for e in store.ledger() if e.kind == "drift"]


def _allow(fed: LocalFederation) -> None:
    with SiteStore.open(fed.sites[0]) as store:
        assert set_drift_sharing(store, True, actor="test-operator")


def _cells(reply: agent_pb2.TaskReply) -> dict[str, float]:
    return {k: v for k, v in reply.metrics.items() if k.startswith(DRIFT_PREFIX)}


def test_drift_on_a_plan_without_drift_is_refused_and_spends_nothing(
        fed: LocalFederation) -> None:
    _allow(fed)
    plain = drift_plan(drift=False, he=False)  # approved at the site, but no [drift]
    receive_plan(fed.sites[0], plan_to_toml(plain), source="file")
    decide(fed.sites[0], plan_hash(plain), "approved", actor="test-operator", note="")
    with SiteStore.open(fed.sites[0]) as store:
        before = len(store.ledger())
    reply = _ask(fed, plain)
    assert not reply.ok and reply.error_code == ErrorCode.OUT_OF_SCHEDULE.value
    assert "[drift]" in reply.reason and not _cells(reply)
    with SiteStore.open(fed.sites[0]) as store:
        assert len(store.ledger()) == before


def test_drift_is_refused_until_the_operator_allows_it(fed: LocalFederation) -> None:
    reply = _ask(fed, fed.plan)  # sharing is off by default
    assert not reply.ok and reply.error_code == ErrorCode.PERMISSION_DENIED.value
    assert _drift_entries(fed) == []
    _allow(fed)
    assert _ask(fed, fed.plan, run_id="drift-2").ok


def test_drift_outside_round_zero_is_refused(fed: LocalFederation) -> None:
    _allow(fed)
    reply = _ask(fed, fed.plan, round_=1)
    assert not reply.ok and reply.error_code == ErrorCode.OUT_OF_SCHEDULE.value
    assert _drift_entries(fed) == []


def test_asking_twice_for_one_version_spends_once_and_repeats_the_answer(
        fed: LocalFederation) -> None:
    _allow(fed)
    first, second = _ask(fed, fed.plan, run_id="drift-a"), _ask(fed, fed.plan, run_id="drift-b")
    assert first.ok and second.ok
    assert first.metrics[DRIFT_REPEATED] == 0.0 and second.metrics[DRIFT_REPEATED] == 1.0
    assert _cells(first) == _cells(second)  # the same draw, nothing new to average
    assert len(_drift_entries(fed)) == 1
    assert "epsilon" in first.metrics and "epsilon" not in second.metrics
    cells = np.array(list(_cells(first).values()))
    assert cells.size == 6 * 10 and np.all(cells == np.rint(cells))


def test_a_new_dataset_version_is_a_new_release(fed: LocalFederation) -> None:
    _allow(fed)
    assert _ask(fed, fed.plan, run_id="drift-a").ok
    register_shifted(fed, 0, towards_max=0.4)
    again = _ask(fed, fed.plan, run_id="drift-b")
    assert again.ok and again.metrics[DRIFT_REPEATED] == 0.0
    versions = _drift_entries(fed)
    assert len(versions) == 2 and versions[0] != versions[1]
    with SiteStore.open(fed.sites[0]) as store:
        entry = [e for e in store.ledger() if e.kind == "drift"][-1]
    assert entry.mechanism.to_json() == {"mechanism": "gaussian", "noise_multiplier": 2.0,
                                         "count": 6}


def _keep_final_model(fed: LocalFederation, plan: StudyPlan) -> None:
    """Site 0 keeps a final model of ``plan`` (as it does when it evaluates the last round)."""
    from client_app.agent.context import initial_model
    from client_app.learning.local_eval import keep_final_model

    n = len(plan.dataset.features)
    with SiteStore.open(fed.sites[0]) as store:
        kept = keep_final_model(unlock_vault(fed.sites[0], PASSPHRASE), plan, store,
                                plan_hash=plan_hash(plan), round_=plan.training.rounds,
                                model=initial_model(plan), mean=np.zeros(n), std=np.ones(n))
    assert kept is not None


def _score_cells(reply: agent_pb2.TaskReply, features: int) -> dict[str, float]:
    return {k: v for k, v in reply.metrics.items()
            if k.startswith(f"{DRIFT_PREFIX}{features}:")}


def test_a_plan_without_scores_gets_no_score_histogram(fed: LocalFederation) -> None:
    _allow(fed)
    _keep_final_model(fed, fed.plan)  # the site could score, but the plan does not ask
    reply = _ask(fed, fed.plan)
    assert reply.ok and reply.metrics[SCORES_METRIC] == 0.0
    assert not _score_cells(reply, 6) and len(_cells(reply)) == 6 * 10
    # The same plan claiming scores: its hash is not the approved one, under either hash.
    raw = fed.plan.model_dump()
    assert raw["drift"] is not None
    raw["drift"]["scores"] = True
    asking = StudyPlan.model_validate(raw)
    text = plan_to_toml(asking).encode()
    agent = SiteAgent(unlock_vault(fed.sites[0], PASSPHRASE))
    for digest in (fed.plan_hash, plan_hash(asking)):
        refused = agent.handle(signed_task(_key(fed), agent_pb2.TASK_DRIFT, asking,
                                           run_id=f"drift-{digest[:6]}", plan_toml=text,
                                           digest=digest))
        assert not refused.ok and not _cells(refused)
    with SiteStore.open(fed.sites[0]) as store:
        entries = [e for e in store.ledger() if e.kind == "drift"]
    assert len(entries) == 1 and entries[0].mechanism.to_json()["count"] == 6


def test_the_ledger_counts_every_histogram_of_the_release(tmp_path: Path) -> None:
    fed = build(tmp_path / "work", drift_plan(he=False, scores=True), sites=2)
    _allow(fed)
    without = _ask(fed, fed.plan, run_id="drift-a")  # no final model kept yet: features only
    assert without.ok and without.metrics[SCORES_METRIC] == 0.0
    assert not _score_cells(without, 6)
    _keep_final_model(fed, fed.plan)
    repeated = _ask(fed, fed.plan, run_id="drift-b")  # the released answer, as it was
    assert repeated.metrics[DRIFT_REPEATED] == 1.0 and not _score_cells(repeated, 6)
    register_shifted(fed, 0, towards_max=0.1)  # a new version: a new release, with scores
    scored = _ask(fed, fed.plan, run_id="drift-c")
    assert scored.ok and scored.metrics[SCORES_METRIC] == 1.0
    scores = np.array(list(_score_cells(scored, 6).values()))
    assert scores.size == 10 and np.all(scores == np.rint(scores))
    assert len(_cells(scored)) == 7 * 10
    with SiteStore.open(fed.sites[0]) as store:
        counts = [e.mechanism.to_json()["count"] for e in store.ledger() if e.kind == "drift"]
    assert counts == [6, 7]  # one unit-sensitivity Gaussian per histogram released

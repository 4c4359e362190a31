"""A coordinator asking sites for drift statistics: only what the approved plan declares,
only when the operator allows it, and never a fresh draw of the same data to average away.

Asking twice for the same plan and dataset version does not spend twice: the site repeats
the answer it released (post-processing); a new dataset version is a new release.
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

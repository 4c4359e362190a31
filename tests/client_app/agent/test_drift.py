"""The drift task after a consent withdrawal: an answer is repeated only while the rows it
was computed on are still the rows consent allows; otherwise the site computes a fresh one
without the withdrawn patients, which spends again, or refuses when the ceiling is reached,
and never sends the earlier answer again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_app.agent.drift import DRIFT_REPEATED
from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.governance.consent import withdraw
from client_app.governance.drift_sharing import set_drift_sharing
from client_app.learning.site_data import load_split
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from protos.wire import DRIFT_PREFIX
from tessera.local_federation import LocalFederation
from tests.drift_federation import PASSPHRASE, build, drift_plan
from tests.federation import signed_task


@pytest.fixture()
def fed(tmp_path: Path) -> LocalFederation:
    fed = build(tmp_path / "work", drift_plan(he=False, features=["mean_radius"]), sites=2)
    with SiteStore.open(fed.sites[0]) as store:
        set_drift_sharing(store, True, actor="test-operator")
    return fed


def _ask(fed: LocalFederation, run_id: str) -> agent_pb2.TaskReply:
    key = SigningKey(bytes.fromhex(
        (fed.coordinator_kit / "signing.key").read_text(encoding="ascii").strip()))
    agent = SiteAgent(unlock_vault(fed.sites[0], PASSPHRASE))
    return agent.handle(signed_task(key, agent_pb2.TASK_DRIFT, fed.plan, run_id=run_id))


def _total(reply: agent_pb2.TaskReply) -> float:
    """The (noisy) row count of the one watched feature's histogram."""
    return sum(v for k, v in reply.metrics.items() if k.startswith(f"{DRIFT_PREFIX}0:"))


def _drift_versions(fed: LocalFederation) -> list[str]:
    with SiteStore.open(fed.sites[0]) as store:
        return [e.dataset_version for e in store.ledger() if e.kind == "drift"]


def _withdraw_half(fed: LocalFederation) -> int:
    vault = unlock_vault(fed.sites[0], PASSPHRASE)
    split = load_split(vault, fed.plan)
    ids = [str(i) for i in np.concatenate([split.train.patient_ids,
                                           split.test.patient_ids])]
    chosen = ids[::2]
    assert withdraw(vault, chosen, actor="test-operator") == len(chosen)
    return len(chosen)


def test_after_a_withdrawal_the_answer_is_fresh_without_the_withdrawn_rows(
        fed: LocalFederation) -> None:
    first = _ask(fed, "drift-a")
    assert first.ok and first.metrics[DRIFT_REPEATED] == 0.0
    withdrawn = _withdraw_half(fed)
    fresh = _ask(fed, "drift-b")
    assert fresh.ok and fresh.metrics[DRIFT_REPEATED] == 0.0 and "epsilon" in fresh.metrics
    # Noise of std 2 on each of 10 cells: the totals differ by the withdrawn rows (~95).
    assert _total(first) - _total(fresh) == pytest.approx(withdrawn, abs=40)
    versions = _drift_versions(fed)
    assert len(versions) == 2 and versions[0] == versions[1]  # same version, spent again
    again = _ask(fed, "drift-c")  # the rows are unchanged since: the fresh answer repeats
    assert again.metrics[DRIFT_REPEATED] == 1.0 and _total(again) == _total(fresh)
    assert len(_drift_versions(fed)) == 2


def test_after_a_withdrawal_without_budget_the_request_is_refused(
        fed: LocalFederation) -> None:
    first = _ask(fed, "drift-a")
    assert first.ok
    with SiteStore.open(fed.sites[0]) as store:
        spent = store.ledger()[-1].epsilon_cumulative
        store.set_ceiling(spent, actor="test-operator")  # nothing more fits
    _withdraw_half(fed)
    refused = _ask(fed, "drift-b")
    assert not refused.ok and refused.error_code == ErrorCode.BUDGET_EXCEEDED.value
    assert not any(k.startswith(DRIFT_PREFIX) for k in refused.metrics)  # old answer not resent
    assert len(_drift_versions(fed)) == 1

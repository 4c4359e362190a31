"""The agent admits no work that the ledger would record when the ledger fails its check,
and no plan whose privacy terms the site does not accept; its hello names the dataset
version only by a keyed digest."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import SiteVault
from client_app.datasets.identity import version_for_digest
from client_app.datasets.validation import Policy
from client_app.datasets.versions import current_version, register_content
from client_app.governance.ledger import keyed_store
from client_app.governance.studies import receive_plan
from client_app.store.site_store import SiteStore
from common.datasets import csv_bytes, load_bundled, select
from common.plan import StudyPlan, bundled_plan_path, load_plan, plan_hash, plan_to_toml
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites, signed_task

PLAN = load_plan(bundled_plan_path("breast_cancer"))


def _plan(*, delta: float = 1e-5, dp: bool = True) -> StudyPlan:
    raw = PLAN.model_dump()
    raw["privacy"]["delta"], raw["privacy"]["dp"] = delta, dp
    return StudyPlan.model_validate(raw)


def _site(tmp_path: Path, *, plans: tuple[StudyPlan, ...] = (PLAN,),
          entries: int = 0) -> tuple[SiteVault, SigningKey, SiteAgent]:
    """A provisioned site holding the first 200 bundled rows, approving ``plans``, with
    ``entries`` DP-SGD rounds already in its ledger."""
    fed = provision_sites(tmp_path, passphrase=TEST_PASSPHRASE)
    vault = fed.vaults["s"]
    data = select(load_bundled(PLAN.dataset.name), PLAN.dataset)
    register_content(vault, csv_bytes(data, list(range(200))), source_name="s.csv", plan=PLAN,
                     policy=Policy(), actor="ops")
    with SiteStore.open(vault.site) as store:
        for plan in plans:
            store.approve(plan_hash(plan), actor="ops")
    with keyed_store(vault) as store:
        for round_ in range(1, entries + 1):
            store.record_training(plan_hash="e" * 64, study="earlier", run_id="r0",
                                  round=round_, dataset_id=PLAN.dataset.name,
                                  dataset_version="v0", noise_multiplier=1.5,
                                  sample_rate=0.2, steps=8)
    return vault, fed.coordinator_key, SiteAgent(vault)


def _sql(vault: SiteVault, *statements: str) -> None:
    with sqlite3.connect(vault.site.db_path) as conn:
        for statement in statements:
            conn.execute(statement)


def _swap(vault: SiteVault) -> None:
    with sqlite3.connect(vault.site.db_path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(ledger)") if r[1] != "id"]
        rows = [conn.execute(f"SELECT {', '.join(cols)} FROM ledger WHERE id = ?",
                             (i,)).fetchone() for i in (2, 3)]
        assign = ", ".join(f"{c} = ?" for c in cols)
        conn.execute(f"UPDATE ledger SET {assign} WHERE id = 2", rows[1])
        conn.execute(f"UPDATE ledger SET {assign} WHERE id = 3", rows[0])


TAMPERING: dict[str, tuple[Callable[[SiteVault], None], int]] = {
    "deleted entry": (lambda v: _sql(v, "DELETE FROM ledger WHERE id = 2"), 3),
    "edited epsilon": (lambda v: _sql(v, "UPDATE ledger SET epsilon = 0.001 WHERE id = 3"), 3),
    "swapped entries": (_swap, 2),
    "truncated tail": (lambda v: _sql(v, "DELETE FROM ledger WHERE id = 4"), 4),
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_agent_refuses_training_on_a_tampered_ledger_naming_the_first_bad_entry(
        tmp_path: Path, how: str) -> None:
    vault, key, agent = _site(tmp_path, entries=4)
    tamper, first_bad = TAMPERING[how]
    tamper(vault)
    reply = agent.handle(signed_task(key, agent_pb2.TASK_TRAIN, PLAN, round_=1))
    assert not reply.ok and reply.error_code == "data_invalid"
    assert f"failed its integrity check at entry {first_bad}" in reply.reason
    with SiteStore.open(vault.site) as store:
        assert [e.details["code"] for e in store.events(kind="task_refused")] == [
            "data_invalid"]
        assert store.events(kind="update_sent") == []
        assert all(e.plan_hash == "e" * 64 for e in store.ledger())


def test_an_intact_ledger_admits_the_study(tmp_path: Path) -> None:
    _, key, agent = _site(tmp_path, entries=4)
    assert agent.handle(signed_task(key, agent_pb2.TASK_HELLO, PLAN)).ok
    reply = agent.handle(signed_task(key, agent_pb2.TASK_TRAIN, PLAN, round_=1,
                                     run_id="r2"))
    # Admitted: it fails later, for want of the round-0 statistics it must build on.
    assert reply.error_code == "bad_envelope" and "carries no stats" in reply.reason


def test_agent_refuses_a_plan_whose_delta_is_above_the_sites(tmp_path: Path) -> None:
    loose = _plan(delta=1e-3)  # the site's default: 1/(10 x 200) = 5e-4
    _, key, agent = _site(tmp_path, plans=(loose,))
    reply = agent.handle(signed_task(key, agent_pb2.TASK_HELLO, loose))
    assert not reply.ok and reply.error_code == "permission_denied"
    assert "privacy.delta" in reply.reason and "0.0005" in reply.reason


def test_agent_refuses_a_non_private_plan_unless_the_site_allows_them(tmp_path: Path) -> None:
    open_plan = _plan(dp=False)
    vault, key, agent = _site(tmp_path, plans=(open_plan,))
    reply = agent.handle(signed_task(key, agent_pb2.TASK_HELLO, open_plan))
    assert reply.error_code == "permission_denied" and "differential privacy" in reply.reason
    with SiteStore.open(vault.site) as store:
        store.set_allow_non_private(True, actor="ops", confirm=True)
    assert agent.handle(signed_task(key, agent_pb2.TASK_HELLO, open_plan, run_id="r2")).ok


def test_hello_names_the_dataset_version_by_a_keyed_digest(tmp_path: Path) -> None:
    vault, key, agent = _site(tmp_path)
    reply = agent.handle(signed_task(key, agent_pb2.TASK_HELLO, PLAN))
    assert reply.ok
    version = current_version(vault.site, PLAN.dataset.name)
    assert version is not None
    content = vault.read_dataset_version(PLAN.dataset.name, version.version)
    assert version.version == hashlib.sha256(content).hexdigest()
    assert len(reply.dataset_version) == 64
    assert reply.dataset_version != version.version  # never the content hash
    assert version.public_version == reply.dataset_version
    assert version_for_digest(vault.site, reply.dataset_version) == (
        PLAN.dataset.name, version.version)


def test_approval_by_file_then_agent_agree_on_the_privacy_terms(tmp_path: Path) -> None:
    vault, key, agent = _site(tmp_path, plans=())
    receive_plan(vault.site, plan_to_toml(PLAN))
    with SiteStore.open(vault.site) as store:
        store.approve(plan_hash(PLAN), actor="ops")
        store.set_delta(1e-6, actor="ops")  # later lowered below the plan's delta
    reply = agent.handle(signed_task(key, agent_pb2.TASK_HELLO, PLAN))
    assert reply.error_code == "permission_denied" and "set by this site's operator" in (
        reply.reason)

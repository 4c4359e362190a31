"""A whole study through the real strategy and real site agents, in one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.store.site_store import SiteStore
from common.plan import bundled_plan_path, load_plan, override
from protos.tessera.v1 import agent_pb2
from server.coordinator import run_study
from tessera import local_federation
from tessera.baseline import released_model_check
from tessera.inprocess import InProcessGrid

PASSPHRASE = "correct horse battery staple"


def _run(tmp_path: Path, *, he: bool = True, ceilings=None, reply_hook=None, rounds=2,
         sites=3, prepare=None, tls=False):
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=rounds,
                    he_enabled=he)
    fed = local_federation.build(tmp_path / "work", plan, sites=sites, ceilings=ceilings or {},
                                 passphrase=PASSPHRASE, tls=tls)
    if prepare is not None:
        prepare(fed)
    agents = [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites]
    grid = InProcessGrid(agents, reply_hook=reply_hook)
    result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id="1",
                       expected_sites=sites, custodian=fed.custodian)
    return fed, grid, result


def test_encrypted_study_completes_and_registers_model(tmp_path: Path) -> None:
    fed, _, result = _run(tmp_path)
    assert result["status"] == "completed", result.get("error")
    # The federation's metrics are DP estimates; the launcher scores the model exactly.
    assert released_model_check(fed, result)["auc"] > 0.95
    assert result["final"]["dp_noise"]["sites"] == 3
    assert len(result["rounds"]) == 2
    for rnd in result["rounds"]:
        assert sorted(rnd["participating_sites"]) == ["site-1", "site-2", "site-3"]
        assert all(v > 0 for v in rnd["bytes_up"].values())
    for site in result["sites"]:
        assert 0 < site["epsilon_spent"] <= fed.plan.privacy.target_epsilon
    for site_dir in fed.sites:  # every release is in the ledger: statistics, every round,
        with SiteStore.open(site_dir) as store:  # the final evaluation and the importance
            entries = store.ledger()
        kinds = [(e.kind, e.round) for e in entries]
        assert kinds == [("row_counts", 0), ("statistics", 0), ("dp_sgd", 1), ("dp_sgd", 2),
                         ("evaluation_counts", 2), ("importance", 2)]
        gaussian = [e.mechanism.to_json() for e in entries if e.kind != "dp_sgd"]
        assert [m["mechanism"] for m in gaussian] == ["gaussian"] * 4
        assert [m["noise_multiplier"] for m in gaussian] == [
            fed.plan.statistics_policy.count_noise_multiplier,
            fed.plan.statistics_policy.noise_multiplier,
            fed.plan.evaluation_policy.noise_multiplier,
            fed.plan.evaluation_policy.importance_noise_multiplier]
        assert entries[-1].epsilon_cumulative <= fed.plan.privacy.target_epsilon
    model_file = fed.coordinator_dir / result["model"]["path"]
    doc = json.loads(model_file.read_text())
    assert doc["plan_hash"] == fed.plan_hash
    gates = result["kpi_gates"]
    assert set(gates["checks"]) == {"min_auc", "max_ece"}
    assert gates["promotable"] is (not gates["reasons"])
    lineage = result["model"]["lineage"]
    assert sorted(lineage["dataset_versions"]) == ["site-1", "site-2", "site-3"]
    assert all(len(v) == 64 for v in lineage["dataset_versions"].values())


def test_site_with_low_ceiling_is_refused_and_study_goes_on(tmp_path: Path) -> None:
    fed, _, result = _run(tmp_path, ceilings={"site-3": 0.5}, rounds=2)
    assert result["status"] == "completed", result.get("error")
    first = result["rounds"][0]
    assert [r["site"] for r in first["refused_sites"]] == ["site-3"]
    assert first["refused_sites"][0]["code"] == "budget_exceeded"
    assert "ceiling" in first["refused_sites"][0]["reason"]
    assert "site-3" not in result["rounds"][1]["participating_sites"]
    with SiteStore.open(fed.sites[2]) as store:
        assert store.ledger() == []


def test_replayed_reply_is_rejected_and_round_completes(tmp_path: Path) -> None:
    # A reply is signed over the task it answers (run, kind, round, nonce): last round's
    # reply replayed in this round fails its signature, and the round goes on without it.
    kept: dict[str, bytes] = {}

    def replay(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        if request.kind == agent_pb2.TASK_TRAIN and site == "site-2":
            if request.round == 1:
                kept["r1"] = data
            elif request.round == 2:
                return kept["r1"]
        return data

    _, _, result = _run(tmp_path, reply_hook=replay, rounds=2)
    assert result["status"] == "completed", result.get("error")
    second = result["rounds"][1]
    assert second["rejected_envelopes"][0]["site"] == "site-2"
    assert second["rejected_envelopes"][0]["code"] == "bad_signature"
    assert sorted(second["participating_sites"]) == ["site-1", "site-3"]


@pytest.mark.parametrize("he", [False])
def test_plaintext_pipeline_runs_for_comparison(tmp_path: Path, he: bool) -> None:
    fed, _, result = _run(tmp_path, he=he, rounds=1)
    assert result["status"] == "completed", result.get("error")
    assert released_model_check(fed, result)["auc"] > 0.9
    assert result["final"]["dp_noise"]["sites"] == 3


def test_site_that_did_not_approve_the_plan_hash_is_refused(tmp_path: Path) -> None:
    def revoke(fed) -> None:
        with SiteStore.open(fed.sites[1]) as store:
            store.revoke(fed.plan_hash, actor="operator")

    fed, grid, result = _run(tmp_path, rounds=1, prepare=revoke)
    assert result["status"] == "completed", result.get("error")
    refused = result["admission_refused"]
    assert [(r["site"], r["code"]) for r in refused] == [("site-2", "not_approved")]
    assert "not approved" in refused[0]["reason"]
    assert all(kind == agent_pb2.TASK_HELLO for node, kind in grid.sent if node == 1001)
    with SiteStore.open(fed.sites[1]) as store:
        assert store.ledger() == []
        assert [e.kind for e in store.events(kind="study_refused")] == ["study_refused"]


def test_study_stops_cleanly_when_too_few_sites_remain(tmp_path: Path) -> None:
    def revoke_two(fed) -> None:
        for site in fed.sites[1:]:
            with SiteStore.open(site) as store:
                store.revoke(fed.plan_hash, actor="operator")

    fed, _, result = _run(tmp_path, rounds=1, prepare=revoke_two)
    assert result["status"] == "failed"
    assert "needs 2" in result["error"]["message"]
    assert result.get("model") is None


def test_provisioned_federation_signs_envelopes_and_rejects_forgeries(tmp_path: Path) -> None:
    def forge(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        reply = agent_pb2.TaskReply.FromString(data)
        if request.kind == agent_pb2.TASK_TRAIN and site == "site-2" and request.round == 1:
            sig = bytearray(reply.envelope.signature)
            sig[0] ^= 0xFF
            reply.envelope.signature = bytes(sig)
        if request.kind == agent_pb2.TASK_TRAIN and site == "site-3" and request.round == 1:
            reply.envelope.example_count += 1000  # changes what the site signed
        return reply.SerializeToString()

    fed, _, result = _run(tmp_path, rounds=1, tls=True, reply_hook=forge, sites=4)
    assert result["status"] == "completed", result.get("error")
    assert result["signed_envelopes"] is True
    rejected = {r["site"]: r["code"] for r in result["rounds"][0]["rejected_envelopes"]}
    assert rejected == {"site-2": "bad_signature", "site-3": "bad_signature"}
    assert result["rounds"][0]["participating_sites"] == ["site-1", "site-4"]


def test_kit_signing_key_moves_into_the_vault(tmp_path: Path) -> None:
    fed, _, result = _run(tmp_path, rounds=1, tls=True)
    assert result["status"] == "completed", result.get("error")
    for site in fed.sites:
        kit = site.root / "kit"
        assert (kit / "node-auth.key").exists()
        assert not (kit / "signing.key").exists()
        assert not (kit / "sealing.key").exists()


def test_tampered_and_replayed_replies_are_rejected_and_honest_sites_finish(
    tmp_path: Path,
) -> None:
    # Whatever is changed in transit (study, an extra ciphertext, last round's reply), the
    # reply no longer verifies; the coordinator's own checks of the envelope inside a valid
    # reply are tested in tests/server/test_envelopes.py.
    kept: dict[int, bytes] = {}

    def misbehave(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        if request.kind != agent_pb2.TASK_TRAIN:
            return data
        reply = agent_pb2.TaskReply.FromString(data)
        if site == "site-2":
            reply.envelope.study = "f" * 64
        elif site == "site-3":
            reply.envelope.ciphertexts.append(b"\0" * 4_000_000)
        elif site == "site-4":
            kept.setdefault(request.round, data)
            return kept[1]
        return reply.SerializeToString()

    _, _, result = _run(tmp_path, rounds=2, sites=5, reply_hook=misbehave)
    assert result["status"] == "completed", result.get("error")
    first, second = result["rounds"]
    codes = {r["site"]: r["code"] for r in second["rejected_envelopes"]}
    assert codes == {"site-2": "bad_signature", "site-3": "bad_signature",
                     "site-4": "bad_signature"}
    assert {r["site"] for r in first["rejected_envelopes"]} == {"site-2", "site-3"}
    assert second["participating_sites"] == ["site-1", "site-5"]

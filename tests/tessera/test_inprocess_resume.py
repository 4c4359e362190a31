"""A coordinator that dies after its sites answered a round but before it checkpointed it:
the resumed run, in one process (real strategy, real site agents, real CKKS), asks the round
again and every site answers it with the very reply it sent before, so the run completes with
one DP-SGD entry per round per site and nothing spent twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.store.site_store import SiteStore
from common.plan import bundled_plan_path, load_plan, override
from protos.tessera.v1 import agent_pb2
from server import strategy
from server.checkpoint import checkpoint_path
from server.coordinator import run_study
from server.run_record import run_folder
from tessera import local_federation
from tessera.inprocess import InProcessGrid, ReplyHook

PASSPHRASE = "correct horse battery staple"
SITES = ("site-1", "site-2", "site-3")


class CoordinatorKilled(BaseException):
    """The coordinator process ending abruptly (nothing of ours catches it)."""


def _federation(tmp_path: Path, *, rounds: int) -> local_federation.LocalFederation:
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=rounds)
    return local_federation.build(tmp_path / "work", plan, sites=len(SITES), ceilings={},
                                  passphrase=PASSPHRASE)


def _run(fed: local_federation.LocalFederation, *, resumed_by: str = "",
         hook: ReplyHook | None = None) -> dict:
    agents = [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites]
    return run_study(InProcessGrid(agents, reply_hook=hook), workdir=fed.workdir,
                     plan_path=fed.plan_path, run_id="1", expected_sites=len(SITES),
                     custodian=fed.custodian, resumed_by=resumed_by)


def _ledger(fed: local_federation.LocalFederation) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for site in fed.sites:
        with SiteStore.open(site) as store:
            out[site.name] = [(e.kind, e.round) for e in store.ledger()]
    return out


def _resent(fed: local_federation.LocalFederation) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for site in fed.sites:
        with SiteStore.open(site) as store:
            out[site.name] = [(e.details["task"], e.details["round"])
                              for e in store.events(kind="reply_resent")]
    return out


def _updates(seen: dict[tuple[str, int], str], round_: int) -> ReplyHook:
    """A hook noting each site's contribution digest of training round ``round_``."""
    def note(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        if request.kind == agent_pb2.TASK_TRAIN and request.round == round_:
            reply = agent_pb2.TaskReply.FromString(data)
            if reply.ok:
                seen[(site, round_)] = reply.envelope.digest
        return data
    return note


def test_a_run_put_back_one_round_resumes_to_the_same_model_spending_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fed = _federation(tmp_path, rounds=2)
    checkpoints: dict[int, bytes] = {}
    save = strategy.save_checkpoint

    def keep(run, round_):  # type: ignore[no-untyped-def]
        path = save(run, round_)
        checkpoints[round_] = path.read_bytes()
        return path

    monkeypatch.setattr(strategy, "save_checkpoint", keep)
    first = _run(fed)
    assert first["status"] == "completed", first.get("error")
    spent = _ledger(fed)
    # The coordinator "died" after the sites trained, evaluated and released the last round
    # but before it checkpointed that round: its checkpoint still says round 1.
    checkpoint_path(run_folder(fed.coordinator_dir, "1")).write_bytes(checkpoints[1])
    seen: dict[tuple[str, int], str] = {}
    again = _run(fed, resumed_by="2", hook=_updates(seen, 2))
    assert again["status"] == "completed", again.get("error")
    assert again["resumed_after_round"] == 1
    last = again["rounds"][-1]
    assert last["round"] == 2 and sorted(last["participating_sites"]) == list(SITES)
    assert not last["refused_sites"] and not last["rejected_envelopes"]
    # Nothing was spent again: one DP-SGD entry per round per site, the ledger unchanged.
    assert _ledger(fed) == spent
    for site in SITES:
        assert [r for kind, r in spent[site] if kind == "dp_sgd"] == [1, 2]
    # Every site re-sent what it had sent (round 2, its evaluation, its importance), the
    # custodian also the opened counts and the release: the model registered again is the
    # very model of the first attempt, and so are the final metrics.
    resent = _resent(fed)
    for site in SITES:
        expected = {("train", 2), ("evaluate", 2), ("importance", 2)}
        if site == fed.custodian:
            expected |= {("open_counts", 2), ("release", 2)}
        assert set(resent[site]) == expected, site
    assert again["model"]["version"] == first["model"]["version"] + 1
    assert again["model"]["sha256"] == first["model"]["sha256"]
    assert again["final"] == first["final"]


def test_a_coordinator_killed_mid_round_resumes_with_the_round_it_lost(
        tmp_path: Path) -> None:
    fed = _federation(tmp_path, rounds=3)
    before: dict[tuple[str, int], str] = {}
    note = _updates(before, 2)

    def die_after_round_2(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        data = note(site, request, data)
        if request.kind == agent_pb2.TASK_TRAIN and request.round == 2 and site == SITES[-1]:
            raise CoordinatorKilled  # every site trained round 2; nothing checkpointed it
        return data

    with pytest.raises(CoordinatorKilled):
        _run(fed, hook=die_after_round_2)
    assert sorted(before) == [(site, 2) for site in SITES]
    after: dict[tuple[str, int], str] = {}
    again = _run(fed, resumed_by="2", hook=_updates(after, 2))
    assert again["status"] == "completed", again.get("error")
    assert again["resumed_after_round"] == 1
    assert [r["round"] for r in again["rounds"]] == [1, 2, 3]
    for rnd in again["rounds"]:
        assert sorted(rnd["participating_sites"]) == list(SITES), rnd
        assert not rnd["refused_sites"], rnd
    # Round 2 was answered with the very contributions the sites sent before the kill...
    assert after == before
    # ... and trained once: one DP-SGD entry per round per site.
    for site, entries in _ledger(fed).items():
        assert [r for kind, r in entries if kind == "dp_sgd"] == [1, 2, 3], site
    assert {site: r for site, r in _resent(fed).items()} == {
        site: [("train", 2)] for site in SITES}

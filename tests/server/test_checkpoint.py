"""A run's checkpoint and resuming from it, with real site agents in one process.

A SIGKILLed coordinator leaves its run folder as it was at the kill; the tests copy the folder
at the moment of the simulated kill and put it back before resuming, as a restarted
coordinator would find it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
from flwr.app import Message

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.store.site_store import SiteStore
from common.errors import TesseraError
from common.plan import bundled_plan_path, load_plan, override
from protos.tessera.v1 import agent_pb2
from protos.wire import unpack_payload
from server.checkpoint import Checkpoint, checkpoint_path, load_checkpoint
from server.coordinator import run_study
from server.run_record import run_folder
from server.study_run import StudyRun
from tessera import local_federation
from tessera.inprocess import InProcessGrid
from tessera.local_federation import LocalFederation

PASSPHRASE = "correct horse battery staple"
RUN = "7"


class KilledError(Exception):
    """The simulated SIGKILL of the coordinator."""


class KillingGrid(InProcessGrid):
    """Delivers messages until the first training task of round ``kill_round``; then keeps a
    copy of the run folder (what a SIGKILL would leave) and dies, after delivering that
    round's tasks when ``after_delivery`` (the sites trained, the coordinator never heard)."""

    def __init__(self, agents: Iterable[SiteAgent], *, folder: Path, kill_round: int,
                 after_delivery: bool) -> None:
        super().__init__(agents)
        self.folder, self.kill_round, self.after_delivery = folder, kill_round, after_delivery

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        batch = list(messages)
        requests = [agent_pb2.TaskRequest.FromString(unpack_payload(m.content))
                    for m in batch]
        kinds = {(r.kind, r.round) for r in requests}
        if (agent_pb2.TASK_TRAIN, self.kill_round) in kinds:
            if self.after_delivery:
                super().send_and_receive(batch, timeout=timeout)
            shutil.copytree(self.folder, self.folder.with_name("at-kill"))
            raise KilledError
        return super().send_and_receive(batch, timeout=timeout)


def _federation(tmp_path: Path, *, rounds: int, min_sites: int) -> LocalFederation:
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=rounds,
                    min_sites=min_sites)
    return local_federation.build(tmp_path / "work", plan, sites=3, ceilings={},
                                  passphrase=PASSPHRASE)


def _agents(fed: LocalFederation) -> list[SiteAgent]:
    return [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites]


def _crash_and_resume(fed: LocalFederation, *, kill_round: int,
                      after_delivery: bool) -> dict:
    folder = run_folder(fed.coordinator_dir, RUN)
    grid = KillingGrid(_agents(fed), folder=folder, kill_round=kill_round,
                       after_delivery=after_delivery)
    with pytest.raises(KilledError):
        run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id=RUN,
                  expected_sites=3, custodian=fed.custodian)
    shutil.rmtree(folder)
    folder.with_name("at-kill").rename(folder)
    assert load_checkpoint(folder).round == kill_round - 1  # type: ignore[union-attr]
    # The restarted coordinator: fresh agents' connections, a new Flower run, the same run id.
    return run_study(InProcessGrid(_agents(fed)), workdir=fed.workdir,
                     plan_path=fed.plan_path, run_id=RUN, expected_sites=3,
                     custodian=fed.custodian, resumed_by="8")


def _dp_sgd_rounds(site: Path) -> list[int]:
    with SiteStore.open(site) as store:
        return [e.round for e in store.ledger() if e.kind == "dp_sgd"]


def test_a_resumed_run_goes_on_from_the_last_completed_round_without_spending_twice(
        tmp_path: Path) -> None:
    fed = _federation(tmp_path, rounds=3, min_sites=2)
    result = _crash_and_resume(fed, kill_round=2, after_delivery=False)
    assert result["status"] == "completed", result.get("error")
    assert result["resumed_after_round"] == 1
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3]
    for rnd in result["rounds"]:
        assert sorted(rnd["participating_sites"]) == ["site-1", "site-2", "site-3"]
    assert result["model"]["version"] >= 1
    assert result["stats_round"]["participating_sites"] == ["site-1", "site-2", "site-3"]
    for site in fed.sites:
        assert _dp_sgd_rounds(site) == [1, 2, 3]
    events = [json.loads(line)["event"] for line in
              (run_folder(fed.coordinator_dir, RUN) / "progress.jsonl").read_text().splitlines()]
    assert events.count("run_resumed") == 1 and events.count("stats_summed") == 1
    point = load_checkpoint(run_folder(fed.coordinator_dir, RUN))
    assert point is not None and point.round == 3


def test_sites_resend_a_round_they_trained_before_the_coordinator_died_and_spend_once(
        tmp_path: Path) -> None:
    fed = _federation(tmp_path, rounds=3, min_sites=2)
    result = _crash_and_resume(fed, kill_round=2, after_delivery=True)
    # Every site trained round 2 before the kill; asked again with the same inputs, each
    # re-sends the update it kept instead of training (and spending) a second time.
    assert result["status"] == "completed", result.get("error")
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3]
    assert sorted(result["rounds"][1]["participating_sites"]) == ["site-1", "site-2", "site-3"]
    assert result["rounds"][1]["refused_sites"] == []
    for site in fed.sites:
        assert _dp_sgd_rounds(site) == [1, 2, 3]


def test_resuming_a_run_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    fed = _federation(tmp_path, rounds=1, min_sites=2)
    result = run_study(InProcessGrid(_agents(fed)), workdir=fed.workdir,
                       plan_path=fed.plan_path, run_id=RUN, expected_sites=3,
                       custodian=fed.custodian, resumed_by="8")
    assert result["status"] == "failed"
    assert result["error"]["code"] == "not_found"
    assert "no checkpoint" in result["error"]["message"]
    for site in fed.sites:
        assert _dp_sgd_rounds(site) == []


def test_a_malformed_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    checkpoint_path(tmp_path).write_text("{not json", encoding="utf-8")
    with pytest.raises(TesseraError, match="is not JSON"):
        load_checkpoint(tmp_path)
    checkpoint_path(tmp_path).write_text(json.dumps({"format": "tessera-checkpoint/1"}),
                                         encoding="utf-8")
    with pytest.raises(TesseraError, match="malformed"):
        load_checkpoint(tmp_path)


def test_checkpoint_round_trips_its_file_form() -> None:
    point = Checkpoint(run_id="3", plan_hash="ab" * 32, round=2, trainers=("a", "b"),
                       evaluators=("a", "b", "c"), site_examples={"a": 10, "b": 12},
                       dataset_versions={"a": "v"}, site_epsilon={"a": 0.5},
                       rounds={0: {"round": 0}, 1: {"round": 1}},
                       admission_refused=[{"site": "c", "code": "not_approved", "reason": "x"}],
                       sets={(1, 0): b"\x00stats", (2, 2): b"weights\xff"})
    assert Checkpoint.from_json(json.loads(json.dumps(point.to_json()))) == point


def test_a_run_keeps_only_the_sets_later_steps_build_on(tmp_path: Path) -> None:
    fed = _federation(tmp_path, rounds=3, min_sites=2)
    seen: list[set[tuple[int, int]]] = []

    class Watching(InProcessGrid):
        run: StudyRun | None = None

        def send_and_receive(self, messages: Iterable[Message], *,
                             timeout: float | None = None) -> Iterable[Message]:
            if Watching.run is not None:
                seen.append(set(Watching.run.sets))
            return super().send_and_receive(messages, timeout=timeout)

    original = StudyRun.keep_sets_from

    def spy(self: StudyRun, round_: int) -> None:
        Watching.run = self
        original(self, round_)

    StudyRun.keep_sets_from = spy  # type: ignore[method-assign]
    try:
        result = run_study(Watching(_agents(fed)), workdir=fed.workdir, plan_path=fed.plan_path,
                           run_id=RUN, expected_sites=3, custodian=fed.custodian)
    finally:
        StudyRun.keep_sets_from = original  # type: ignore[method-assign]
    assert result["status"] == "completed", result.get("error")
    stats, weights, counts = (agent_pb2.ENVELOPE_STATS, agent_pb2.ENVELOPE_WEIGHTS,
                              agent_pb2.ENVELOPE_EVAL)
    # Never more than the statistics, one round's weights and one round's counts at once.
    assert seen and max(len(s) for s in seen) <= 3
    assert all(len({r for k, r in s if k == weights}) <= 1 for s in seen)
    assert all(len({r for k, r in s if k == counts}) <= 1 for s in seen)
    assert all((stats, 0) in s for s in seen)
    point = load_checkpoint(run_folder(fed.coordinator_dir, RUN))
    assert point is not None and set(point.sets) == {(stats, 0), (weights, 3)}

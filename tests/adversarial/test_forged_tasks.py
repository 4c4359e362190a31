"""Attacks on what a site agrees to do: unsigned, tampered, replayed and out-of-schedule tasks.

Before the fix (protocol v1) tasks were unsigned: anyone who reached the SuperLink with a kit
could ask a site anything, as often as it liked, in any order (a second release, an
evaluation of a round that never happened, importance before release), and a plan of any
size was parsed before its size was checked. Each is refused now, with a reason, and
recorded as a refused task in the site's events (and so in its audit trail).
"""

from __future__ import annotations

import pytest

from client_app.store.site_store import SiteStore
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from protos.wire import MAX_PLAN_BYTES
from server.tasks import sign_task
from tests.adversarial.honest_run import RUN, HonestRun, copy_set, fresh_run, honest_run

W, S = agent_pb2.ENVELOPE_WEIGHTS, agent_pb2.ENVELOPE_STATS


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HonestRun:
    return honest_run(tmp_path_factory.mktemp("tasks") / "w")


def _hello(run: HonestRun) -> agent_pb2.TaskRequest:
    return run.task(agent_pb2.TASK_HELLO, 0, run_id="probe")


def test_unsigned_task_is_refused(run: HonestRun) -> None:
    request = _hello(run)
    request.ClearField("signature")
    reply = run.agent("site-1").handle(request)
    assert not reply.ok and reply.error_code == "bad_signature"
    assert "not signed" in reply.reason


def test_task_signed_by_another_key_is_refused(run: HonestRun) -> None:
    request = agent_pb2.TaskRequest()
    request.CopyFrom(_hello(run))
    reply = run.agent("site-1").handle(sign_task(request, SigningKey.generate()))
    assert not reply.ok and reply.error_code == "bad_signature"


def test_task_changed_after_signing_is_refused(run: HonestRun) -> None:
    request = run.task(agent_pb2.TASK_RELEASE, run.plan.training.rounds, run_id="other-run")
    request.kind = agent_pb2.TASK_IMPORTANCE
    reply = run.agent("site-2").handle(request)
    assert not reply.ok and reply.error_code == "bad_signature"
    request = _hello(run)
    request.run_id = "renamed"
    assert run.agent("site-2").handle(request).error_code == "bad_signature"


def test_replayed_task_is_refused(run: HonestRun) -> None:
    request = _hello(run)
    agent = run.agent("site-3")
    assert agent.handle(request).ok
    again = agent.handle(request)
    assert not again.ok and again.error_code == "replay"
    # A nonce is remembered in the site store, not only in memory: a restarted agent too.
    assert run.agent("site-3").handle(request).error_code == "replay"


def test_second_release_of_a_run_is_refused(run: HonestRun) -> None:
    # A second decryption of the final model, on other inputs, is refused. (The very same
    # inputs get the first release back byte for byte, decrypting nothing:
    # tests/adversarial/test_resumed_steps.py.)
    rounds = run.plan.training.rounds
    released = [site for site, req, reply in run.exchanges
                if req.kind == agent_pb2.TASK_RELEASE and reply.ok]
    assert released == [run.fed.custodian]
    fewer = run.full_set(W, rounds)
    del fewer.envelopes[-1]
    del fewer.digests[-1]
    reply = run.agent(run.fed.custodian).handle(run.task(
        agent_pb2.TASK_RELEASE, rounds, model=fewer, stats=run.full_set(S, 0)))
    assert not reply.ok and reply.error_code == "out_of_schedule"
    assert "already released" in reply.reason and not reply.HasField("model")
    assert "other inputs" in reply.reason


def test_schedules_the_plan_does_not_call_for_are_refused(run: HonestRun) -> None:
    rounds = run.plan.training.rounds
    agent = run.agent("site-2")
    cases = [
        # an evaluation of a round that did not happen
        (run.task(agent_pb2.TASK_EVALUATE, rounds + 1, run_id="late"), "wrong_round"),
        # a round evaluated twice
        (run.task(agent_pb2.TASK_EVALUATE, 1, model=run.full_set(W, 1),
                  stats=run.full_set(S, 0)), "out_of_schedule"),
        # importance before the final round
        (run.task(agent_pb2.TASK_IMPORTANCE, 1, run_id="early"), "out_of_schedule"),
        # leave-one-site-out when the plan declares none
        (run.task(agent_pb2.TASK_TRAIN, 1, run_id=f"{RUN}-loso-site-1"), "out_of_schedule"),
        # own counts for a run that did not leave this site out
        (run.task(agent_pb2.TASK_EVALUATE_OWN, rounds, run_id="main"), "out_of_schedule"),
        # a round trained again
        (run.task(agent_pb2.TASK_TRAIN, 1, stats=run.full_set(S, 0)), "duplicate"),
        # statistics sent twice
        (run.task(agent_pb2.TASK_STATS, 0), "out_of_schedule"),
    ]
    for request, code in cases:
        reply = agent.handle(request)
        assert not reply.ok and reply.error_code == code, (request.kind, reply.reason)
    with SiteStore.open(run.vaults["site-2"].site) as store:
        refused = [e.details["code"] for e in store.events(kind="task_refused")]
    assert refused[-len(cases):] == [code for _, code in cases]


def test_oversized_plan_is_refused_before_it_is_parsed(run: HonestRun) -> None:
    request = agent_pb2.TaskRequest(kind=agent_pb2.TASK_HELLO, plan_hash=run.fed.plan_hash,
                                    plan_toml=b"[" * (MAX_PLAN_BYTES + 1), run_id="big")
    reply = run.agent("site-1").handle(sign_task(request, run.coordinator))
    assert not reply.ok and reply.error_code == "oversized"  # not plan_invalid: never parsed


def test_inputs_a_task_does_not_need_are_refused(run: HonestRun) -> None:
    fresh = fresh_run(run, "extra", train_rounds=1)
    reply = run.agent("site-1").handle(run.task(
        agent_pb2.TASK_TRAIN, 2, run_id="extra", model=copy_set(fresh.sets[(W, 1)]),
        stats=copy_set(fresh.sets[(S, 0)]), counts=copy_set(fresh.sets[(W, 1)])))
    assert not reply.ok and reply.error_code == "bad_envelope"
    assert "may not carry counts" in reply.reason

"""A step asked again after a coordinator restart: the same reply, never a second answer.

A coordinator that died after the sites answered a step but before it checkpointed asks that
step again, with a new nonce, when the run resumes. Before the fix a site refused every such
repeat (``duplicate``/``out_of_schedule``), so a run whose sites had all trained its next
round could not go on. Now the very same inputs get the very same reply (identical
ciphertext bytes, signed afresh over the new nonce, nothing spent), and everything else a
malicious coordinator might try with a repeat is still refused: other inputs for an answered
step (fishing for a second noisy answer on another model), an older step, a step whose reply
was not kept, the old task replayed.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from client_app.store.site_store import SiteStore
from client_app.store.tables import SentReplyRow
from common.errors import TesseraError
from privacy.signing import verify
from protos.claims import REPLY_DOMAIN, reply_claims, reply_sha256
from protos.tessera.v1 import agent_pb2
from protos.wire import task_name
from tests.adversarial.honest_run import HonestRun, honest_run

W, S, E = agent_pb2.ENVELOPE_WEIGHTS, agent_pb2.ENVELOPE_STATS, agent_pb2.ENVELOPE_EVAL


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HonestRun:
    return honest_run(tmp_path_factory.mktemp("repeats") / "w")


def _exchange(run: HonestRun, site: str, kind: int,
              round_: int) -> tuple[agent_pb2.TaskRequest, agent_pb2.TaskReply]:
    """The task the coordinator sent ``site`` during the run and the reply it got."""
    return next((req, reply) for who, req, reply in run.exchanges
                if who == site and req.kind == kind and req.round == round_ and reply.ok)


def _ledger(run: HonestRun, site: str) -> list[tuple[str, int, float]]:
    with SiteStore.open(run.vaults[site].site) as store:
        return [(e.kind, e.round, e.epsilon_cumulative) for e in store.ledger()]


def _events(run: HonestRun, site: str, kind: str) -> list[dict]:
    with SiteStore.open(run.vaults[site].site) as store:
        return [e.details for e in store.events(kind=kind)]


def _verifies(run: HonestRun, site: str, reply: agent_pb2.TaskReply,
              request: agent_pb2.TaskRequest) -> bool:
    try:
        verify(run.site_key(site).public_hex, reply.signature.hex(), REPLY_DOMAIN,
               reply_claims(reply, request))
    except TesseraError:  # the signature does not verify
        return False
    return True


def _without_last(cset: agent_pb2.ContributionSet) -> agent_pb2.ContributionSet:
    """The set with one contribution fewer: still enough sites, another sum."""
    del cset.envelopes[-1]
    del cset.digests[-1]
    return cset


def test_a_trained_round_asked_again_gets_the_same_update_signed_for_the_new_nonce(
        run: HonestRun) -> None:
    rounds = run.plan.training.rounds
    _, first = _exchange(run, "site-2", agent_pb2.TASK_TRAIN, rounds)
    ledger = _ledger(run, "site-2")
    sent_before = _events(run, "site-2", "update_sent")
    # The resumed coordinator holds the contributions in full (the site's cache is empty).
    again = run.task(agent_pb2.TASK_TRAIN, rounds, model=run.full_set(W, rounds - 1),
                     stats=run.full_set(S, 0))
    reply = run.agent("site-2").handle(again)
    assert reply.ok, reply.reason
    # Identical ciphertext bytes, the whole reply identical but for its signature...
    assert reply.envelope.SerializeToString() == first.envelope.SerializeToString()
    assert list(reply.envelope.ciphertexts) == list(first.envelope.ciphertexts)
    assert reply_sha256(reply) == reply_sha256(first)
    # ... signed over the new task's nonce, not the old one's.
    assert reply.signature != first.signature
    assert _verifies(run, "site-2", reply, again)
    # Nothing spent, nothing sent anew; the audit trail says the kept update went again.
    assert _ledger(run, "site-2") == ledger
    assert _events(run, "site-2", "update_sent") == sent_before
    resent = _events(run, "site-2", "reply_resent")[-1]
    assert (resent["task"], resent["round"], resent["run_id"]) == ("train", rounds, again.run_id)
    assert resent["digest"] == first.envelope.digest


def test_a_trained_round_asked_on_other_inputs_is_refused_as_a_duplicate(
        run: HonestRun) -> None:
    rounds = run.plan.training.rounds
    ledger = _ledger(run, "site-1")
    # Another model for the same round (one contribution fewer): a second noisy answer.
    reply = run.agent("site-1").handle(run.task(
        agent_pb2.TASK_TRAIN, rounds, model=_without_last(run.full_set(W, rounds - 1)),
        stats=run.full_set(S, 0)))
    assert not reply.ok and reply.error_code == "duplicate"
    assert "other inputs" in reply.reason and not reply.HasField("envelope")
    assert _ledger(run, "site-1") == ledger
    refused = _events(run, "site-1", "task_refused")[-1]
    assert (refused["task"], refused["code"]) == ("train", "duplicate")


def test_the_old_task_replayed_is_refused_and_the_old_reply_does_not_answer_a_new_nonce(
        run: HonestRun) -> None:
    rounds = run.plan.training.rounds
    old_request, old_reply = _exchange(run, "site-3", agent_pb2.TASK_TRAIN, rounds)
    replayed = run.agent("site-3").handle(old_request)
    assert not replayed.ok and replayed.error_code == "replay"
    again = run.task(agent_pb2.TASK_TRAIN, rounds, model=run.full_set(W, rounds - 1),
                     stats=run.full_set(S, 0))
    reply = run.agent("site-3").handle(again)
    assert reply.ok, reply.reason
    # The coordinator cannot pass the old reply off as the answer to the new task, nor the
    # new one as the answer to the old task.
    assert _verifies(run, "site-3", old_reply, old_request)
    assert not _verifies(run, "site-3", old_reply, again)
    assert not _verifies(run, "site-3", reply, old_request)
    # The re-ask itself is spent too: its nonce is never admitted again.
    assert run.agent("site-3").handle(again).error_code == "replay"


def test_older_steps_are_refused_even_with_their_own_inputs(run: HonestRun) -> None:
    agent = run.agent("site-2")
    ledger = _ledger(run, "site-2")
    trained = agent.handle(run.task(agent_pb2.TASK_TRAIN, 1, stats=run.full_set(S, 0)))
    assert not trained.ok and trained.error_code == "duplicate"
    evaluated = agent.handle(run.task(agent_pb2.TASK_EVALUATE, 1, model=run.full_set(W, 1),
                                      stats=run.full_set(S, 0)))
    assert not evaluated.ok and evaluated.error_code == "out_of_schedule"
    assert _ledger(run, "site-2") == ledger


@pytest.mark.parametrize("kind", [agent_pb2.TASK_EVALUATE, agent_pb2.TASK_OPEN_COUNTS,
                                  agent_pb2.TASK_RELEASE, agent_pb2.TASK_IMPORTANCE],
                         ids=task_name)
def test_final_round_steps_asked_again_get_the_same_answer_and_spend_nothing(
        run: HonestRun, kind: int) -> None:
    rounds = run.plan.training.rounds
    site = run.fed.custodian  # the site that answered every kind of step
    _, first = _exchange(run, site, kind, rounds)
    ledger = _ledger(run, site)
    released = _events(run, site, "model_released")
    inputs = {"counts": run.full_set(E, rounds)} if kind == agent_pb2.TASK_OPEN_COUNTS else \
        {"model": run.full_set(W, rounds), "stats": run.full_set(S, 0)}
    again = run.task(kind, rounds, **inputs)
    reply = run.agent(site).handle(again)
    assert reply.ok, reply.reason
    assert reply_sha256(reply) == reply_sha256(first)  # no second decryption, no new noise
    assert _verifies(run, site, reply, again)
    assert _ledger(run, site) == ledger
    assert _events(run, site, "model_released") == released


def test_a_step_whose_reply_was_not_kept_is_refused(run: HonestRun) -> None:
    # A site that answered before it kept replies (an older version) refuses as before.
    rounds = run.plan.training.rounds
    with SiteStore.open(run.vaults["site-3"].site) as store, \
            store.transaction(write=True) as session:
        session.execute(sa.delete(SentReplyRow))
    reply = run.agent("site-3").handle(run.task(
        agent_pb2.TASK_TRAIN, rounds, model=run.full_set(W, rounds - 1),
        stats=run.full_set(S, 0)))
    assert not reply.ok and reply.error_code == "duplicate"
    assert "already trained" in reply.reason

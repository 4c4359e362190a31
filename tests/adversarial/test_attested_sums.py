"""Attacks on attested sums ([federation] attesters): a lying coordinator gets no site to
decrypt a sum that fewer than the plan's number of key-holding sites verified and signed.

With attesters, a site decrypts a sum it did not recompute itself. Each attack below forges
or bends the attested form (its signatures, its ciphertexts, its names, its count of
attesters, the task it comes in) and is refused before anything is decrypted or spent;
attesters themselves refuse to sign a set with a forged contribution.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from client_app.agent.contributions import Expected, SumVerifier
from client_app.custody.ckks_keys import load_secret_context
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from common.plan import override, plan_hash
from common.workdir import CoordinatorDir
from privacy.ckks import add_encrypted, fingerprint_of_secret
from privacy.digest import payload_digest
from protos.claims import ATTESTATION_DOMAIN, attestation_claims
from protos.tessera.v1 import agent_pb2
from server.he_context import read_evaluation_context
from tests.adversarial.honest_run import FreshRun, HonestRun, copy_set, fresh_run, honest_run

W, S = agent_pb2.ENVELOPE_WEIGHTS, agent_pb2.ENVELOPE_STATS
X = "attested-attack"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HonestRun:
    return honest_run(tmp_path_factory.mktemp("attested") / "w", attesters=2)


@pytest.fixture(scope="module")
def fresh(run: HonestRun) -> FreshRun:
    return fresh_run(run, X)


def _attest(run: HonestRun, full: agent_pb2.ContributionSet, *, run_id: str,
            by: tuple[str, ...] = ("site-1", "site-2")) -> agent_pb2.ContributionSet:
    """The attested form of ``full`` as an honest coordinator builds it: the sum it adds
    itself, and the attestations the sites ``by`` return to real attest tasks."""
    evaluation = read_evaluation_context(CoordinatorDir(run.fed.coordinator_dir).he_dir,
                                         plan_hash=run.fed.plan_hash)
    total = add_encrypted(evaluation.context, [list(e.ciphertexts) for e in full.envelopes])
    form = agent_pb2.ContributionSet(kind=full.kind, round=full.round, sum_digest=payload_digest(
        ciphertexts=total), example_total=sum(int(e.example_count) for e in full.envelopes))
    form.digests.extend(full.digests)
    form.sites.extend(e.site for e in full.envelopes)
    form.sum.extend(total)
    for site in by:
        reply = run.agent(site).handle(run.task(agent_pb2.TASK_ATTEST, int(full.round),
                                                run_id=run_id, attest=copy_set(full)))
        assert reply.ok, reply.reason
        assert reply.attested.sum_digest == form.sum_digest  # the same sum, bit for bit
        form.attestations.extend(reply.attested.attestations)
    return form


def _evaluate(run: HonestRun, site: str, fresh: FreshRun, model: agent_pb2.ContributionSet,
              stats: agent_pb2.ContributionSet | None = None) -> agent_pb2.TaskReply:
    rounds = run.plan.training.rounds
    return run.agent(site).handle(run.task(
        agent_pb2.TASK_EVALUATE, rounds, run_id=fresh.run_id, model=model,
        stats=stats if stats is not None else copy_set(fresh.sets[(S, 0)])))


def _ledger(run: HonestRun, site: str) -> int:
    with SiteStore.open(run.vaults[site].site) as store:
        return len(store.ledger())


def test_the_honest_run_forwards_attested_sums(run: HonestRun) -> None:
    events = [json.loads(line) for line in (run.fed.coordinator_dir / "runs" / "honest" /
                                            "progress.jsonl").read_text().splitlines()]
    attested = [e for e in events if e["event"] == "sum_attested"]
    assert {(e["set"], e["round"]) for e in attested} == {("stats", 0), ("weights", 1),
                                                          ("weights", 2)}
    assert all(len(e["attesters"]) == 2 for e in attested)
    # Training and evaluation tasks carried sums; the release carried every contribution.
    trains = [req for _, req, _ in run.exchanges if req.kind == agent_pb2.TASK_TRAIN]
    assert any(req.stats.sum_digest and not req.stats.envelopes for req in trains)
    releases = [req for _, req, rep in run.exchanges
                if req.kind == agent_pb2.TASK_RELEASE and rep.ok]
    assert releases and all(not req.model.sum_digest for req in releases)


def test_an_attested_sum_opens_to_the_recomputed_sum(run: HonestRun, fresh: FreshRun) -> None:
    full = copy_set(fresh.sets[(W, run.plan.training.rounds)])
    form = _attest(run, full, run_id=X)
    vault = run.vaults["site-3"]
    secret = load_secret_context(vault, run.fed.plan_hash)
    model = full.envelopes[0].layout
    expect = Expected(kind=W, round=int(full.round), run_id=X, plan_hash=run.fed.plan_hash,
                      layout=tuple(TensorSlot(name=s.name, shape=tuple(s.shape),
                                              offset=int(s.offset), length=int(s.length))
                                   for s in model))
    signers = run.agent("site-3")._signers(run.plan)
    from_sum = SumVerifier().open(form, expect, plan=run.plan, signers=signers, secret=secret)
    recomputed = SumVerifier().open(full, expect, plan=run.plan, signers=signers,
                                    secret=secret)
    assert from_sum.attested and not recomputed.attested
    assert from_sum.examples == recomputed.examples and from_sum.digests == recomputed.digests
    assert np.allclose(from_sum.values, recomputed.values, rtol=0, atol=1e-6)


def test_a_single_sites_update_under_forged_attestations_is_refused(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    # The coordinator wants site-2's update alone decrypted: it passes that one ciphertext off
    # as the sum of all three and signs the attestations itself under two sites' names.
    full = copy_set(fresh.sets[(W, run.plan.training.rounds)])
    form = _attest(run, full, run_id=X)
    lone = next(e for e in full.envelopes if e.site == "site-2")
    del form.sum[:]
    form.sum.extend(lone.ciphertexts)
    form.sum_digest = payload_digest(ciphertexts=list(lone.ciphertexts))
    del form.attestations[:]
    fingerprint = fingerprint_of_secret(load_secret_context(run.vaults["site-3"],
                                                            run.fed.plan_hash))
    for site in ("site-1", "site-2"):
        claims = attestation_claims(form, plan_hash=run.fed.plan_hash, run_id=X,
                                    fingerprint=fingerprint, attester=site)
        form.attestations.add(site=site, signature=bytes.fromhex(
            run.coordinator.sign(ATTESTATION_DOMAIN, claims)))
    before = _ledger(run, "site-3")
    reply = _evaluate(run, "site-3", fresh, form)
    assert not reply.ok and reply.error_code == "bad_signature"
    assert decryptions == [] and _ledger(run, "site-3") == before


def test_genuine_attestations_do_not_cover_other_ciphertexts(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    full = copy_set(fresh.sets[(W, run.plan.training.rounds)])
    form = _attest(run, full, run_id=X)
    lone = next(e for e in full.envelopes if e.site == "site-2")
    swapped = copy_set(form)  # the ciphertexts swapped, the digest left: the digest fails
    del swapped.sum[:]
    swapped.sum.extend(lone.ciphertexts)
    reply = _evaluate(run, "site-3", fresh, swapped)
    assert not reply.ok and reply.error_code == "bad_envelope"
    swapped.sum_digest = payload_digest(ciphertexts=list(lone.ciphertexts))  # now the signatures
    reply = _evaluate(run, "site-3", fresh, swapped)
    assert not reply.ok and reply.error_code == "bad_signature"
    fewer = copy_set(form)  # a set narrowed to the two sites: the signed names differ
    del fewer.sites[2:], fewer.digests[2:]
    reply = _evaluate(run, "site-3", fresh, fewer)
    assert not reply.ok and reply.error_code == "bad_signature"
    assert decryptions == []


def test_too_few_or_repeated_attesters_are_refused(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    full = copy_set(fresh.sets[(W, run.plan.training.rounds)])
    form = _attest(run, full, run_id=X)
    one = copy_set(form)
    del one.attestations[1:]
    reply = _evaluate(run, "site-3", fresh, one)
    assert not reply.ok and reply.error_code == "permission_denied"
    assert "1 attestation(s), the plan needs 2" in reply.reason
    twice = copy_set(one)
    twice.attestations.append(one.attestations[0])
    reply = _evaluate(run, "site-3", fresh, twice)
    assert not reply.ok and reply.error_code == "duplicate"
    assert decryptions == []


def test_an_attested_sum_is_never_opened_for_a_release(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    # The release's decryption leaves the site: only a sum the site recomputed may be released.
    rounds = run.plan.training.rounds
    form = _attest(run, copy_set(fresh.sets[(W, rounds)]), run_id=X)
    reply = run.agent("site-1").handle(run.task(
        agent_pb2.TASK_RELEASE, rounds, run_id=X, model=form,
        stats=copy_set(fresh.sets[(S, 0)])))
    assert not reply.ok and reply.error_code == "permission_denied"
    assert not reply.HasField("model") and decryptions == []


def test_a_sum_opened_from_attestations_is_not_named_for_a_release(
    run: HonestRun, decryptions: list[int]
) -> None:
    # A site that opened the final model from its attested form (its evaluation) is then
    # asked to release it by reference: it must be handed every contribution instead.
    fresh = fresh_run(run, "attested-then-release")
    rounds = run.plan.training.rounds
    full = copy_set(fresh.sets[(W, rounds)])
    form = _attest(run, full, run_id=fresh.run_id)
    agent = run.agent("site-2")
    reply = agent.handle(run.task(agent_pb2.TASK_EVALUATE, rounds, run_id=fresh.run_id,
                                  model=form, stats=copy_set(fresh.sets[(S, 0)])))
    assert reply.ok, reply.reason
    opened = len(decryptions)
    reference = agent_pb2.ContributionSet(kind=W, round=rounds)
    reference.digests.extend(full.digests)
    reply = agent.handle(run.task(agent_pb2.TASK_RELEASE, rounds, run_id=fresh.run_id,
                                  model=reference, stats=copy_set(fresh.sets[(S, 0)])))
    assert not reply.ok and reply.error_code == "not_cached"
    assert len(decryptions) == opened  # the statistics were recomputed; no model decrypted


def test_attesters_refuse_a_set_with_a_forged_contribution(
    run: HonestRun, fresh: FreshRun
) -> None:
    full = copy_set(fresh.sets[(W, run.plan.training.rounds)])
    full.envelopes[0].example_count += 1  # no longer what its site signed
    reply = run.agent("site-2").handle(run.task(agent_pb2.TASK_ATTEST, int(full.round),
                                                run_id=X, attest=full))
    assert not reply.ok and reply.error_code == "bad_signature"
    assert not reply.HasField("attested")
    by_reference = agent_pb2.ContributionSet(kind=W, round=full.round)
    by_reference.digests.extend(full.digests)
    reply = run.agent("site-2").handle(run.task(agent_pb2.TASK_ATTEST, int(full.round),
                                                run_id=X, attest=by_reference))
    assert not reply.ok and reply.error_code == "bad_envelope"


def test_a_plan_without_attesters_takes_no_attested_sum(run: HonestRun,
                                                        fresh: FreshRun) -> None:
    full = copy_set(fresh.sets[(W, run.plan.training.rounds)])
    form = _attest(run, full, run_id=X)
    plain = override(run.plan, attesters=0)
    assert plan_hash(plain) != run.fed.plan_hash
    expect = Expected(kind=W, round=int(full.round), run_id=X, plan_hash=run.fed.plan_hash,
                      layout=())
    with pytest.raises(TesseraError) as err:
        SumVerifier().open(form, expect, plan=plain, signers={}, secret=b"")
    assert err.value.code == ErrorCode.PERMISSION_DENIED
    assert "does not accept attested sums" in err.value.message

"""Attacks on what a site decrypts: a lying coordinator gets no decryption of anything but a
sum the site recomputed from contributions signed by distinct study-key holders.

Before the fix (protocol v1), a site decrypted whatever aggregate the coordinator sent: two
hand-crafted full-slot chunks in a release's statistics returned the secret key's embedding;
a plaintext "global" model made a site an oracle over its own rows; a padded envelope passed
the "true aggregate" rule of open_counts; and an evaluate task planted the kept model. Each
attack below is refused before any decryption (a spy counts decryptions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_app.agent.envelopes import seal_vector
from client_app.agent.signing import sign_envelope
from client_app.learning.local_eval import stored_models
from client_app.store.site_store import SiteStore
from privacy.ckks import CkksParams, encrypt_vector, generate_keys
from privacy.digest import payload_digest
from protos.tessera.v1 import agent_pb2
from server.envelopes import contribution_set
from tests.adversarial.honest_run import FreshRun, HonestRun, copy_set, fresh_run, honest_run

W, S, E = agent_pb2.ENVELOPE_WEIGHTS, agent_pb2.ENVELOPE_STATS, agent_pb2.ENVELOPE_EVAL


X = "attack"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HonestRun:
    return honest_run(tmp_path_factory.mktemp("sums") / "w")


@pytest.fixture(scope="module")
def fresh(run: HonestRun) -> FreshRun:
    return fresh_run(run, X)


@pytest.fixture(scope="module")
def middle(run: HonestRun) -> FreshRun:
    """A run stopped after round 1: round 2's training is still to come."""
    return fresh_run(run, "attack-middle", train_rounds=1)


def _crafted(run: HonestRun, template: agent_pb2.UpdateEnvelope) -> agent_pb2.UpdateEnvelope:
    """A ciphertext the coordinator made itself (any (c0, c1) it likes, here under a key of its
    own with the study's parameters), dressed as a site's contribution."""
    forged = agent_pb2.UpdateEnvelope()
    forged.CopyFrom(template)
    params = CkksParams(
        poly_modulus_degree=run.plan.he.poly_modulus_degree,
        coeff_mod_bit_sizes=tuple(run.plan.he.coeff_mod_bit_sizes),
        global_scale_bits=run.plan.he.global_scale_bits,
    )
    own = generate_keys(params)
    chunks = encrypt_vector(own.secret_context, np.ones(len(template.ciphertexts) * 4096))
    del forged.ciphertexts[:]
    forged.ciphertexts.extend(chunks[: len(template.ciphertexts)])
    forged.digest = payload_digest(ciphertexts=list(forged.ciphertexts))
    return forged


def _refusals(run: HonestRun, site: str) -> list[dict]:
    with SiteStore.open(run.vaults[site].site) as store:
        return [e.details for e in store.events(kind="task_refused")]


def test_crafted_release_decrypts_nothing_and_is_recorded(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    rounds = run.plan.training.rounds
    stats = copy_set(fresh.sets[(S, 0)])
    stats.envelopes[0].CopyFrom(_crafted(run, stats.envelopes[0]))
    del stats.digests[:]
    before = len(_refusals(run, "site-1"))
    reply = run.agent("site-1").handle(
        run.task(
            agent_pb2.TASK_RELEASE,
            rounds,
            run_id=X,
            model=copy_set(fresh.sets[(W, rounds)]),
            stats=stats,
        )
    )
    assert not reply.ok and reply.error_code == "bad_signature"
    assert not reply.HasField("model") and not reply.metrics
    assert decryptions == []  # every input is verified before anything is decrypted
    refusals = _refusals(run, "site-1")
    assert len(refusals) == before + 1 and refusals[-1]["task"] == "release"
    assert refusals[-1]["code"] == "bad_signature"


def test_crafted_statistics_alone_are_never_decrypted(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    rounds = run.plan.training.rounds
    stats = copy_set(fresh.sets[(S, 0)])
    stats.envelopes[0].CopyFrom(_crafted(run, stats.envelopes[0]))
    del stats.digests[:]
    reply = run.agent("site-2").handle(
        run.task(
            agent_pb2.TASK_EVALUATE, 1, run_id=X, model=copy_set(fresh.sets[(W, 1)]), stats=stats
        )
    )
    assert not reply.ok and reply.error_code == "bad_signature"
    assert decryptions == []
    del rounds


def test_crafted_global_model_in_a_middle_round_is_refused(
    run: HonestRun, middle: FreshRun, decryptions: list[int]
) -> None:
    model = copy_set(middle.sets[(W, 1)])
    model.envelopes[1].CopyFrom(_crafted(run, model.envelopes[1]))
    del model.digests[:]
    with SiteStore.open(run.vaults["site-3"].site) as store:
        ledger_before = len(store.ledger())
    reply = run.agent("site-3").handle(
        run.task(
            agent_pb2.TASK_TRAIN,
            2,
            run_id=middle.run_id,
            model=model,
            stats=copy_set(middle.sets[(S, 0)]),
        )
    )
    assert not reply.ok and reply.error_code == "bad_signature"
    assert not reply.HasField("envelope")
    assert decryptions == []
    with SiteStore.open(run.vaults["site-3"].site) as store:
        assert len(store.ledger()) == ledger_before  # no training, no budget spent


def test_contributions_of_another_run_or_round_are_refused(run: HonestRun, fresh: FreshRun) -> None:
    # Genuine, validly signed contributions, replayed into another run or round.
    model = run.full_set(W, 1)  # the honest run's, forwarded into the attack run
    reply = run.agent("site-1").handle(
        run.task(
            agent_pb2.TASK_EVALUATE, 1, run_id=X, model=model, stats=copy_set(fresh.sets[(S, 0)])
        )
    )
    assert not reply.ok and reply.error_code == "foreign_study"
    relabelled = copy_set(fresh.sets[(W, 1)])
    relabelled.round = 2
    reply = run.agent("site-1").handle(
        run.task(
            agent_pb2.TASK_EVALUATE,
            2,
            run_id=X,
            model=relabelled,
            stats=copy_set(fresh.sets[(S, 0)]),
        )
    )
    assert not reply.ok


def test_plaintext_model_under_he_is_refused(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    # Even signed by real sites (the coordinator cannot forge that), a plaintext vector is not
    # accepted where the plan encrypts: the site would otherwise score a model of its choosing.
    layout = [agent_pb2.ChunkLayout()]
    honest = run.contribution("site-1", W, 1)
    envs = []
    for site in ("site-1", "site-2", "site-3"):
        env = seal_vector(
            kind=W,
            plan_hash=run.fed.plan_hash,
            run_id=X,
            round_=1,
            site=site,
            example_count=1,
            values=np.zeros(sum(s.length for s in honest.layout)),
            layout=[],
            secret_context=None,
        )
        env.layout.extend(honest.layout)
        sign_envelope(env, run.site_key(site))
        envs.append(env)
    del layout
    reply = run.agent("site-1").handle(
        run.task(
            agent_pb2.TASK_EVALUATE,
            1,
            run_id=X,
            model=contribution_set(W, 1, envs),
            stats=copy_set(fresh.sets[(S, 0)]),
        )
    )
    assert not reply.ok and "plaintext contribution" in reply.reason
    assert not reply.HasField("counts") and not reply.HasField("envelope")


def test_padded_open_counts_is_refused(
    run: HonestRun, fresh: FreshRun, decryptions: list[int]
) -> None:
    rounds = run.plan.training.rounds
    own = next(e for e in fresh.sets[(E, rounds)].envelopes if e.site == "site-2")
    # One site's counts alone, its counts twice, or padded with a plaintext vector.
    for envs, code in (([own], "permission_denied"), ([own, own], "duplicate")):
        reply = run.agent("site-1").handle(
            run.task(
                agent_pb2.TASK_OPEN_COUNTS,
                rounds,
                run_id=X,
                counts=contribution_set(E, rounds, envs),
            )
        )
        assert not reply.ok and reply.error_code == code, reply.reason
        assert not reply.HasField("counts")
    padding = agent_pb2.UpdateEnvelope()
    padding.CopyFrom(own)
    padding.site, padding.encrypted = "site-3", False
    del padding.ciphertexts[:]
    padding.values.extend([0.0] * sum(s.length for s in own.layout))
    padding.digest = payload_digest(values=list(padding.values))
    reply = run.agent("site-1").handle(
        run.task(
            agent_pb2.TASK_OPEN_COUNTS,
            rounds,
            run_id=X,
            counts=contribution_set(E, rounds, [own, padding]),
        )
    )
    assert not reply.ok and not reply.HasField("counts")
    assert decryptions == []


def test_kept_model_cannot_be_planted(run: HonestRun, fresh: FreshRun) -> None:
    rounds = run.plan.training.rounds
    vault = run.vaults["site-1"]
    before = [(m.name, m.at) for m in stored_models(vault)]
    kept = vault.read_model(before[0][0])
    model = copy_set(fresh.sets[(W, rounds)])
    model.envelopes[0].CopyFrom(_crafted(run, model.envelopes[0]))
    del model.digests[:]
    reply = run.agent("site-1").handle(
        run.task(
            agent_pb2.TASK_EVALUATE,
            rounds,
            run_id=X,
            model=model,
            stats=copy_set(fresh.sets[(S, 0)]),
        )
    )
    assert not reply.ok
    assert [(m.name, m.at) for m in stored_models(vault)] == before
    assert vault.read_model(before[0][0]) == kept


def test_a_fake_site_in_the_manifest_is_not_a_key_holder(
    run: HonestRun, fresh: FreshRun, tmp_path: Path, decryptions: list[int]
) -> None:
    # Contributions count only from sites the custodian sealed the study key to: a
    # contribution under a name the site does not hold as a key holder is refused.
    rounds = run.plan.training.rounds
    model = copy_set(fresh.sets[(W, rounds)])
    forged = agent_pb2.UpdateEnvelope()
    forged.CopyFrom(model.envelopes[0])
    forged.site = "mallory"
    model.envelopes[0].CopyFrom(forged)
    del model.digests[:]
    reply = run.agent("site-2").handle(
        run.task(
            agent_pb2.TASK_RELEASE,
            rounds,
            run_id=X,
            model=model,
            stats=copy_set(fresh.sets[(S, 0)]),
        )
    )
    assert not reply.ok and reply.error_code == "bad_signature"
    assert "not a site permitted" in reply.reason
    assert decryptions == []

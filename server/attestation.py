"""Attested sums on the coordinator: a few sites verify a set and sign its sum for the rest.

Without attesters every site receives every contribution of a set and verifies and adds
them itself: N sites x N contributions per step. With ``[federation] attesters = c`` (an
encrypted study) the coordinator adds the accepted contributions itself (it may add, never
decrypt), asks ``c`` sites to verify the same contributions and sign the digest of their sum
(``TASK_ATTEST``; sites chosen in an order drawn from the run, set, kind and round, the next
ones asked when one fails), and forwards the *attested form* (names, digests, example
total, the sum and the ``c`` signatures) to the other sites' training, evaluation and
importance tasks. The release and the opening of counts still carry every contribution
(client_app/agent/attested.py). When fewer than ``c`` sites attest, sites get the full set
as before: attesting saves work, it is never needed for progress.
"""

from __future__ import annotations

import hashlib
import logging

from flwr.serverapp import Grid

from privacy.ckks import add_encrypted
from privacy.digest import payload_digest
from privacy.signing import verify
from protos.claims import ATTESTATION_DOMAIN, attestation_claims
from protos.tessera.v1 import agent_pb2
from protos.wire import envelope_name
from server.study_run import StudyRun

log = logging.getLogger(__name__)

#: The sets a site may receive in attested form (the weights of a round, the statistics).
ATTESTED_KINDS = (agent_pb2.ENVELOPE_STATS, agent_pb2.ENVELOPE_WEIGHTS)


def attested_form(run: StudyRun, full: agent_pb2.ContributionSet) -> agent_pb2.ContributionSet:
    """A set's attested form, summed here, without attestations yet."""
    total = add_encrypted(run.evaluation_context or b"",
                          (list(e.ciphertexts) for e in full.envelopes))
    form = agent_pb2.ContributionSet(kind=full.kind, round=full.round,
                                     example_total=sum(int(e.example_count)
                                                       for e in full.envelopes),
                                     sum_digest=payload_digest(ciphertexts=total))
    form.digests.extend(full.digests)
    form.sites.extend(e.site for e in full.envelopes)
    form.sum.extend(total)
    return form


def _order(run: StudyRun, form: agent_pb2.ContributionSet, candidates: list[str]) -> list[str]:
    """Candidates in an order that changes with the run, the set, its kind and round."""
    def rank(site: str) -> str:
        text = f"{run.run_id}|{form.kind}|{form.round}|{form.sum_digest}|{site}"
        return hashlib.sha256(text.encode()).hexdigest()
    return sorted(candidates, key=rank)


def valid_attestation(run: StudyRun, form: agent_pb2.ContributionSet, site: str,
                      reply: agent_pb2.TaskReply) -> agent_pb2.Attestation | None:
    """The site's attestation of exactly ``form`` from its (authenticated) reply, or None."""
    got = reply.attested
    same = (got.kind == form.kind and got.round == form.round
            and list(got.digests) == list(form.digests) and list(got.sites) == list(form.sites)
            and got.example_total == form.example_total and got.sum_digest == form.sum_digest
            and len(got.attestations) == 1 and got.attestations[0].site == site)
    public = run.signing_keys.get(site)
    if not reply.ok or not same or public is None or run.evaluation is None:
        return None
    attestation = got.attestations[0]
    claims = attestation_claims(form, plan_hash=run.plan_hash, run_id=run.run_id,
                                fingerprint=run.evaluation.fingerprint, attester=site)
    try:
        verify(public, attestation.signature.hex(), ATTESTATION_DOMAIN, claims)
    except Exception:
        return None
    return attestation


def attest_set(grid: Grid, run: StudyRun, kind: int, round_: int) -> bool:
    """Have ``run.plan.federation.attesters`` sites attest the set (kind, round); whether
    it is now forwarded in attested form."""
    need = run.plan.federation.attesters
    full = run.sets.get((kind, round_))
    if not need or full is None or not run.plan.he.enabled or run.evaluation is None:
        return False
    if (kind, round_) in run.attested:
        return True
    form = attested_form(run, full)
    by_site = {site: node for node, site in run.trainers.items()}
    queue = _order(run, form, [s for s in form.sites if s in by_site])
    got: list[agent_pb2.Attestation] = []
    failed: list[str] = []
    while queue and len(got) < need:
        batch, queue = queue[:need - len(got)], queue[need - len(got):]
        requests = {by_site[s]: run.request(s, agent_pb2.TASK_ATTEST, round_, attest=(kind,
                                                                                      round_))
                    for s in batch}
        replies, _ = run.send(grid, requests, names=run.trainers)
        answered = {item.reply.site: item.reply for item in replies if item.reply is not None}
        for site in batch:
            reply = answered.get(site)
            attestation = None if reply is None else valid_attestation(run, form, site, reply)
            if attestation is None:
                failed.append(site)
            else:
                got.append(attestation)
    what = envelope_name(kind)
    if len(got) < need:
        run.recorder.event("sum_not_attested", set=what, round=round_,
                           attesters=[a.site for a in got], failed=failed)
        log.info("%s sum of round %d not attested: sites get every contribution", what, round_)
        return False
    form.attestations.extend(got)
    run.attested[(kind, round_)] = form
    run.recorder.event("sum_attested", set=what, round=round_,
                       attesters=[a.site for a in got], failed=failed)
    return True


def attest_current(grid: Grid, run: StudyRun) -> None:
    """Attest every set the next steps build on that is not attested yet."""
    if not run.plan.federation.attesters:
        return
    for kind, round_ in sorted(run.sets):
        if kind in ATTESTED_KINDS:
            attest_set(grid, run, kind, round_)

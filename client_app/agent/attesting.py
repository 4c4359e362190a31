"""``TASK_ATTEST`` at a site: verify a contribution set, sum it and sign the sum.

The attester decrypts nothing and spends nothing: it runs every check a decrypting site runs
on each contribution (:meth:`client_app.agent.context.TaskContext.verify_inputs`), adds the
ciphertexts itself and signs :func:`protos.claims.attestation_claims` over the sum's digest.
The reply carries the set in attested form without the summed ciphertexts (the coordinator
adds the same contributions and must arrive at the same digest: CKKS addition and its
serialisation are deterministic). docs/envelope-format.md, "Attested sums".
"""

from __future__ import annotations

from client_app.agent.context import TaskContext
from client_app.store.events import SiteEvent
from privacy.ckks import add_encrypted, fingerprint_of_secret
from privacy.digest import payload_digest
from protos.claims import ATTESTATION_DOMAIN, attestation_claims
from protos.tessera.v1 import agent_pb2
from protos.wire import envelope_name


def attest(ctx: TaskContext) -> agent_pb2.TaskReply:
    """The attested form of the task's (verified) set, signed by this site."""
    cset = ctx.request.attest
    secret = ctx.secret
    assert secret is not None  # an attested plan is encrypted; verify_inputs needs the key
    envelopes = list(cset.envelopes)
    total = add_encrypted(secret, [list(e.ciphertexts) for e in envelopes])
    attested = agent_pb2.ContributionSet(kind=cset.kind, round=cset.round,
                                         example_total=sum(int(e.example_count)
                                                           for e in envelopes),
                                         sum_digest=payload_digest(ciphertexts=total))
    attested.digests.extend(e.digest for e in envelopes)
    attested.sites.extend(e.site for e in envelopes)
    claims = attestation_claims(attested, plan_hash=ctx.plan_hash, run_id=ctx.run_id,
                                fingerprint=fingerprint_of_secret(secret), attester=ctx.site)
    attested.attestations.add(site=ctx.site, signature=bytes.fromhex(
        ctx.identity.signing_key.sign(ATTESTATION_DOMAIN, claims)))
    ctx.store.record_event(SiteEvent.SUM_ATTESTED, plan_hash=ctx.plan_hash, details={
        "run_id": ctx.run_id, "set": envelope_name(cset.kind), "round": int(cset.round),
        "sites": len(envelopes), "sum_digest": attested.sum_digest})
    return agent_pb2.TaskReply(ok=True, attested=attested)

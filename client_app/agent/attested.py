"""Attested sums: the sum of a contribution set that other key-holding sites verified.

With ``[federation] attesters = c`` in an encrypted study, the coordinator may forward a set
in *attested form* instead of every contribution: who contributed (site names in the order
of their payload digests), their example total, the summed ciphertexts, the sum's digest and
the Ed25519 signatures of at least ``c`` distinct sites permitted to contribute. Each
attester verified every contribution exactly as :mod:`client_app.agent.contributions` does,
added them itself and signed :func:`protos.claims.attestation_claims` (``TASK_ATTEST``,
:mod:`client_app.agent.attesting`). A site that gets the attested form checks the names, the
count against the plan's minimum, the sum's digest and every attestation; it decrypts the
sum only when all hold. The trust this adds (the coordinator and ``c`` attesters together
could hand a site a sum of their choosing) is stated in docs/security.md; tasks whose
decryption leaves the site (the release, opening counts) never accept an attested sum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from common.errors import ErrorCode, TesseraError
from common.layout import layout_length
from common.plan import StudyPlan
from privacy.ckks import fingerprint_of_secret
from privacy.digest import payload_digest
from privacy.signing import verify
from protos.claims import ATTESTATION_DOMAIN, attestation_claims
from protos.tessera.v1 import agent_pb2
from protos.wire import envelope_name


def is_attested(contributions: agent_pb2.ContributionSet) -> bool:
    """Whether a set comes in attested form (any of its attested-form fields is set)."""
    return bool(contributions.sum or contributions.sum_digest or contributions.attestations
                or contributions.sites or contributions.example_total)


def _bad(contributions: agent_pb2.ContributionSet, message: str,
         code: ErrorCode = ErrorCode.BAD_ENVELOPE) -> TesseraError:
    what = (f"attested {envelope_name(contributions.kind)} sum of round "
            f"{int(contributions.round)}")
    return TesseraError(code, f"{what}: {message}")


def check_attested(contributions: agent_pb2.ContributionSet, *, plan: StudyPlan,
                   plan_hash: str, run_id: str, layout: tuple, signers: Mapping[str, str],
                   secret: bytes | None) -> tuple[str, ...]:
    """The contributing sites of an attested set whose every check holds; else a
    TesseraError naming the first fault. Nothing is decrypted here."""
    need_attesters = plan.federation.attesters
    if not plan.he.enabled or need_attesters < 1:
        raise _bad(contributions, "the plan does not accept attested sums "
                                  "([federation] attesters)", ErrorCode.PERMISSION_DENIED)
    if contributions.envelopes:
        raise _bad(contributions, "carries contributions and an attested sum at once")
    if secret is None:
        raise _bad(contributions, "this site holds no key for the study", ErrorCode.KEY_MISSING)
    sites, digests = list(contributions.sites), list(contributions.digests)
    if len(sites) != len(digests):
        raise _bad(contributions, f"names {len(sites)} site(s) for {len(digests)} digest(s)")
    if len(set(sites)) != len(sites):
        raise _bad(contributions, "names a site twice", ErrorCode.DUPLICATE)
    strangers = [s for s in sites if s not in signers]
    if strangers:
        raise _bad(contributions, f"'{strangers[0]}' is not a site permitted to contribute",
                   ErrorCode.BAD_SIGNATURE)
    need = plan.federation.min_sites
    if len(sites) < need:
        raise _bad(contributions, f"{len(sites)} site(s) contributed, the plan needs at least "
                                  f"{need}", ErrorCode.PERMISSION_DENIED)
    if contributions.example_total < len(sites):
        raise _bad(contributions, "fewer examples than contributing sites")
    chunks = math.ceil(layout_length(list(layout)) / (plan.he.poly_modulus_degree // 2))
    if len(contributions.sum) != chunks:
        raise _bad(contributions, f"{len(contributions.sum)} ciphertext(s) where the layout "
                                  f"needs {chunks}")
    if payload_digest(ciphertexts=list(contributions.sum)) != contributions.sum_digest:
        raise _bad(contributions, "the summed ciphertexts do not match the sum's digest")
    _check_attestations(contributions, plan_hash=plan_hash, run_id=run_id, signers=signers,
                        fingerprint=fingerprint_of_secret(secret), need=need_attesters)
    return tuple(sites)


def _check_attestations(contributions: agent_pb2.ContributionSet, *, plan_hash: str,
                        run_id: str, signers: Mapping[str, str], fingerprint: str,
                        need: int) -> None:
    attesters: list[str] = []
    for attestation in contributions.attestations:
        who = attestation.site
        if who in attesters:
            raise _bad(contributions, f"two attestations by '{who}'", ErrorCode.DUPLICATE)
        public = signers.get(who)
        if public is None:
            raise _bad(contributions, f"attested by '{who}', not a site permitted to "
                                      "contribute", ErrorCode.BAD_SIGNATURE)
        claims = attestation_claims(contributions, plan_hash=plan_hash, run_id=run_id,
                                    fingerprint=fingerprint, attester=who)
        try:
            verify(public, attestation.signature.hex(), ATTESTATION_DOMAIN, claims)
        except TesseraError:
            raise _bad(contributions, f"the attestation by '{who}' does not verify",
                       ErrorCode.BAD_SIGNATURE) from None
        attesters.append(who)
    if len(attesters) < need:
        raise _bad(contributions, f"{len(attesters)} attestation(s), the plan needs {need}",
                   ErrorCode.PERMISSION_DENIED)

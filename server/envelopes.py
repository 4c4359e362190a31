"""Coordinator-side checks of the sites' contributions.

The coordinator never decrypts and never sums for the sites: it checks each contribution
against what the step expects (study, run, round, kind, sender, key fingerprint, layout,
size, digest, signature, no replay or duplicate) and forwards the accepted ones, signed as
they came, to the sites, which verify and sum them themselves (client_app/agent/
contributions.py). Parsing every ciphertext here drops a malformed contribution early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common.errors import ErrorCode, TesseraError
from privacy.ckks import add_encrypted
from privacy.digest import payload_digest
from privacy.signing import verify
from protos.claims import ENVELOPE_DOMAIN, envelope_claims
from protos.tessera.v1 import agent_pb2
from protos.wire import ENVELOPE_VERSION, envelope_name

#: Bytes allowed per CKKS ciphertext: 2 polynomials x degree x primes x 8 bytes, plus slack.
_CT_SLACK = 64 * 1024


@dataclass(frozen=True)
class Expectation:
    """What one step's contributions must look like."""

    plan_hash: str
    run_id: str
    round: int
    kind: int
    length: int
    encrypted: bool
    fingerprint: str
    slots: int
    poly_modulus_degree: int
    primes: int

    @property
    def chunks(self) -> int:
        """Number of ciphertexts a vector of ``length`` values needs."""
        return math.ceil(self.length / self.slots)

    @property
    def max_bytes(self) -> int:
        """Largest payload accepted for one contribution."""
        if not self.encrypted:
            return self.length * 8 + _CT_SLACK
        per_ct = 2 * self.poly_modulus_degree * self.primes * 8 + _CT_SLACK
        return self.chunks * per_ct


@dataclass
class ReplayGuard:
    """Remembers contributions seen in this run, to refuse replays and duplicates."""

    digests: set[str] = field(default_factory=set)
    senders: dict[tuple[int, int, str], str] = field(default_factory=dict)


def payload_size(env: agent_pb2.UpdateEnvelope) -> int:
    """Bytes of payload a contribution carries."""
    return sum(len(c) for c in env.ciphertexts) + 8 * len(env.values)


def check_envelope(
    env: agent_pb2.UpdateEnvelope, *, sender: str, expect: Expectation, guard: ReplayGuard,
    signing_keys: dict[str, str], evaluation_context: bytes | None = None,
) -> None:
    """Raise a TesseraError naming the fault if a contribution may not be forwarded."""
    if env.version != ENVELOPE_VERSION:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, f"unsupported envelope version {env.version}")
    if env.study != expect.plan_hash or env.run_id != expect.run_id:
        raise TesseraError(ErrorCode.FOREIGN_STUDY, "contribution belongs to another study or run")
    if env.kind != expect.kind:
        raise TesseraError(ErrorCode.BAD_ENVELOPE,
                           f"expected a '{envelope_name(expect.kind)}' contribution")
    if env.site != sender:
        raise TesseraError(ErrorCode.BAD_ENVELOPE,
                           "contribution names another site than its sender")
    if payload_size(env) > expect.max_bytes:
        raise TesseraError(
            ErrorCode.OVERSIZED,
            f"payload of {payload_size(env)} bytes exceeds the limit of {expect.max_bytes}",
        )
    if env.digest in guard.digests:
        raise TesseraError(ErrorCode.REPLAY, "contribution was already received in this run")
    if env.round < expect.round:
        raise TesseraError(
            ErrorCode.REPLAY, f"contribution of round {env.round} replayed in round {expect.round}"
        )
    if env.round != expect.round:
        raise TesseraError(ErrorCode.WRONG_ROUND, f"contribution is for round {env.round}")
    key = (int(expect.kind), expect.round, sender)
    if key in guard.senders:
        raise TesseraError(ErrorCode.DUPLICATE, "a second contribution from this site")
    _check_payload(env, expect)
    public = signing_keys.get(sender)
    if public is None:
        raise TesseraError(ErrorCode.BAD_SIGNATURE, "sender is not a site of this federation")
    verify(public, env.signature.hex(), ENVELOPE_DOMAIN, envelope_claims(env))
    if expect.encrypted and evaluation_context is not None:
        add_encrypted(evaluation_context, [list(env.ciphertexts)])  # parses every ciphertext
    guard.digests.add(env.digest)
    guard.senders[key] = env.digest


def _check_payload(env: agent_pb2.UpdateEnvelope, expect: Expectation) -> None:
    if env.example_count <= 0:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "contribution has no examples")
    layout_len = max((s.offset + s.length for s in env.layout), default=0)
    if layout_len != expect.length:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "contribution layout does not match the plan")
    if env.encrypted != expect.encrypted:
        raise TesseraError(ErrorCode.BAD_ENVELOPE,
                           "contribution encryption does not match the plan")
    if expect.encrypted:
        if env.context_fingerprint != expect.fingerprint:
            raise TesseraError(
                ErrorCode.FINGERPRINT_MISMATCH, "contribution was encrypted under another key"
            )
        if len(env.ciphertexts) != expect.chunks or len(env.values):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "wrong number of ciphertexts")
        digest = payload_digest(ciphertexts=list(env.ciphertexts))
    else:
        if len(env.values) != expect.length or len(env.ciphertexts):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "wrong number of values")
        if not np.all(np.isfinite(np.asarray(env.values))):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "contribution holds non-finite values")
        digest = payload_digest(values=list(env.values))
    if digest != env.digest:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "payload does not match its digest")


def contribution_set(kind: int, round_: int,
                     envelopes: list[agent_pb2.UpdateEnvelope]) -> agent_pb2.ContributionSet:
    """The accepted contributions of one step, in the order the sites will sum them."""
    out = agent_pb2.ContributionSet(kind=kind, round=round_)  # type: ignore[arg-type]
    out.envelopes.extend(envelopes)
    out.digests.extend(e.digest for e in envelopes)
    return out


def by_reference(full: agent_pb2.ContributionSet) -> agent_pb2.ContributionSet:
    """The same set named by its digests only (for a site that verified it already)."""
    ref = agent_pb2.ContributionSet(kind=full.kind, round=full.round)
    ref.digests.extend(full.digests)
    return ref

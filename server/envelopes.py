"""Coordinator-side envelope checks and encrypted sums.

The coordinator never decrypts: it checks each site's envelope against what the round
expects (study, round, sender, key fingerprint, layout, size, digest, no replay or
duplicate) and adds the accepted ciphertexts and example counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from common.errors import ErrorCode, TesseraError
from privacy.ckks import add_encrypted
from privacy.digest import ENVELOPE_DOMAIN, envelope_claims, payload_digest
from privacy.signing import verify
from protos.tessera.v1 import agent_pb2

ENVELOPE_VERSION = 1
#: Bytes allowed per CKKS ciphertext: 2 polynomials x degree x primes x 8 bytes, plus slack.
_CT_SLACK = 64 * 1024


@dataclass(frozen=True)
class Expectation:
    """What one round's envelopes must look like."""

    plan_hash: str
    round: int
    kind: str
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
        """Largest payload accepted for one envelope."""
        if not self.encrypted:
            return self.length * 8 + _CT_SLACK
        per_ct = 2 * self.poly_modulus_degree * self.primes * 8 + _CT_SLACK
        return self.chunks * per_ct


def check_signature(env: agent_pb2.UpdateEnvelope, *, sender: str,
                    signing_keys: dict[str, str] | None) -> None:
    """Verify a site's Ed25519 signature when the federation is provisioned."""
    if signing_keys is None:
        return
    public = signing_keys.get(sender)
    if public is None:
        raise TesseraError(ErrorCode.BAD_SIGNATURE, "sender is not a site of this federation")
    if not env.signature:
        raise TesseraError(ErrorCode.BAD_SIGNATURE, "envelope is not signed")
    claims = envelope_claims(study=env.study, round_=env.round, site=env.site, kind=env.kind,
                             example_count=env.example_count, digest=env.digest,
                             fingerprint=env.context_fingerprint)
    verify(public, env.signature.hex(), ENVELOPE_DOMAIN, claims)


@dataclass
class ReplayGuard:
    """Remembers envelopes seen in this run, to refuse replays and duplicates."""

    digests: set[str] = field(default_factory=set)
    senders: dict[tuple[str, int, str], str] = field(default_factory=dict)


def payload_size(env: agent_pb2.UpdateEnvelope) -> int:
    """Bytes of payload an envelope carries."""
    return sum(len(c) for c in env.ciphertexts) + 8 * len(env.values)


def check_envelope(
    env: agent_pb2.UpdateEnvelope, *, sender: str, expect: Expectation, guard: ReplayGuard,
    signing_keys: dict[str, str] | None = None, evaluation_context: bytes | None = None,
) -> None:
    """Raise a TesseraError naming the fault if an envelope may not join the round's sum."""
    if env.version != ENVELOPE_VERSION:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, f"unsupported envelope version {env.version}")
    if env.study != expect.plan_hash:
        raise TesseraError(ErrorCode.FOREIGN_STUDY, "envelope belongs to another study")
    if env.kind != expect.kind:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, f"expected a '{expect.kind}' envelope")
    if env.site != sender:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "envelope names another site than its sender")
    if payload_size(env) > expect.max_bytes:
        raise TesseraError(
            ErrorCode.OVERSIZED,
            f"payload of {payload_size(env)} bytes exceeds the limit of {expect.max_bytes}",
        )
    if env.digest in guard.digests:
        raise TesseraError(ErrorCode.REPLAY, "envelope was already received earlier in this run")
    if env.round < expect.round:
        raise TesseraError(
            ErrorCode.REPLAY, f"envelope of round {env.round} replayed in round {expect.round}"
        )
    if env.round != expect.round:
        raise TesseraError(ErrorCode.WRONG_ROUND, f"envelope is for round {env.round}")
    key = (expect.kind, expect.round, sender)
    if key in guard.senders:
        raise TesseraError(ErrorCode.DUPLICATE, "a second envelope from this site in this round")
    _check_payload(env, expect)
    check_signature(env, sender=sender, signing_keys=signing_keys)
    if expect.encrypted and evaluation_context is not None:
        # Parse every ciphertext now, so one bad envelope is dropped, not the whole sum.
        add_encrypted(evaluation_context, [list(env.ciphertexts)])
    guard.digests.add(env.digest)
    guard.senders[key] = env.digest


def _check_payload(env: agent_pb2.UpdateEnvelope, expect: Expectation) -> None:
    if env.example_count <= 0:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "envelope has no examples")
    layout_len = max((s.offset + s.length for s in env.layout), default=0)
    if layout_len != expect.length:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "envelope layout does not match the model")
    if env.encrypted != expect.encrypted:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "envelope encryption does not match the plan")
    if expect.encrypted:
        if env.context_fingerprint != expect.fingerprint:
            raise TesseraError(
                ErrorCode.FINGERPRINT_MISMATCH, "envelope was encrypted under another CKKS key"
            )
        if len(env.ciphertexts) != expect.chunks or len(env.values):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "wrong number of ciphertexts")
        digest = payload_digest(ciphertexts=list(env.ciphertexts))
    else:
        if len(env.values) != expect.length or len(env.ciphertexts):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "wrong number of values")
        if not np.all(np.isfinite(np.asarray(env.values))):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "envelope holds non-finite values")
        digest = payload_digest(values=list(env.values))
    if digest != env.digest:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "payload does not match its digest")


def sum_envelopes(
    envs: Sequence[agent_pb2.UpdateEnvelope],
    *,
    expect: Expectation,
    evaluation_context: bytes | None,
) -> agent_pb2.UpdateEnvelope:
    """Add checked envelopes into an aggregate (ciphertexts stay ciphertexts)."""
    if not envs:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "nothing to aggregate")
    agg = agent_pb2.UpdateEnvelope(
        version=ENVELOPE_VERSION, study=expect.plan_hash, round=expect.round, site="",
        example_count=sum(int(e.example_count) for e in envs), kind=expect.kind,
        contributors=len(envs), encrypted=expect.encrypted,
        context_fingerprint=expect.fingerprint if expect.encrypted else "",
    )
    agg.layout.extend(envs[0].layout)
    if expect.encrypted:
        if evaluation_context is None:
            raise TesseraError(ErrorCode.KEY_MISSING, "no CKKS evaluation context")
        total = add_encrypted(evaluation_context, [list(e.ciphertexts) for e in envs])
        agg.ciphertexts.extend(total)
        agg.digest = payload_digest(ciphertexts=total)
    else:
        values = np.sum([np.asarray(e.values, dtype=np.float64) for e in envs], axis=0)
        agg.values.extend(values.tolist())
        agg.digest = payload_digest(values=agg.values)
    return agg

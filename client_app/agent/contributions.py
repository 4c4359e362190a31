"""Verified sums: a site decrypts nothing it has not recomputed from signed contributions.

Any ciphertext whose randomness the coordinator knows leaks the secret key once decrypted and
returned (and a crafted one leaks it even through range checks), so the coordinator never
hands a site an aggregate to decrypt. It forwards the *contributions* of the previous step;
the site checks each one (version, study, run, round, kind, layout, encryption, key
fingerprint, payload digest and the Ed25519 signature of a distinct permitted site), requires
at least the plan's minimum number of sites, recomputes the sum itself and only then decrypts.
Verified sums are kept per run, kind and round, so a set forwarded once can later be named by
its digests alone. A plan with ``[federation] attesters`` may forward a set as an *attested
sum* instead (:mod:`client_app.agent.attested`); tasks whose decryption leaves the site ask
for ``full_only`` and accept only sums recomputed here.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from client_app.agent.attested import check_attested, is_attested
from client_app.agent.envelopes import layout_to_proto
from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot, layout_length
from common.plan import StudyPlan
from privacy.ckks import add_encrypted, decrypt_vector, fingerprint_of_secret
from privacy.digest import payload_digest
from privacy.signing import verify
from protos.claims import ENVELOPE_DOMAIN, envelope_claims
from protos.tessera.v1 import agent_pb2
from protos.wire import ENVELOPE_VERSION, envelope_name

#: Verified sums kept in memory (a run needs its statistics and the latest rounds).
CACHE_SIZE = 16


@dataclass(frozen=True)
class Expected:
    """What the contributions of one step must be."""

    kind: int
    round: int
    run_id: str
    plan_hash: str
    layout: tuple[TensorSlot, ...]


@dataclass(frozen=True)
class VerifiedSum:
    """The sum of verified contributions, decrypted at this site (not yet divided)."""

    values: np.ndarray
    examples: int
    contributors: tuple[str, ...]
    digests: tuple[str, ...]
    #: Opened from an attested sum rather than recomputed here from every contribution.
    attested: bool = False

    @property
    def mean(self) -> np.ndarray:
        """The example-weighted mean the sum stands for."""
        return self.values / float(self.examples)


def _bad(expect: Expected, message: str, code: ErrorCode = ErrorCode.BAD_ENVELOPE) -> TesseraError:
    what = f"{envelope_name(expect.kind)} contributions of round {expect.round}"
    return TesseraError(code, f"{what}: {message}")


class SumVerifier:
    """Checks forwarded contribution sets and opens their sums (one per site agent)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[str, int, int], VerifiedSum] = OrderedDict()
        self._fingerprints: dict[tuple[str, int, int], str] = {}

    def verify(self, contributions: agent_pb2.ContributionSet, expect: Expected, *,
               plan: StudyPlan, signers: Mapping[str, str], secret: bytes | None,
               full_only: bool = False) -> tuple[str, ...]:
        """Check a set without decrypting anything (a set named by digests must have been
        verified here before); the contributing sites."""
        checked = self._checked(contributions, expect, plan=plan, signers=signers,
                                secret=secret, full_only=full_only)
        return checked.contributors if isinstance(checked, VerifiedSum) else checked

    def open(self, contributions: agent_pb2.ContributionSet, expect: Expected, *,
             plan: StudyPlan, signers: Mapping[str, str],
             secret: bytes | None, full_only: bool = False) -> VerifiedSum:
        """The verified sum of a contribution set, or a TesseraError naming the fault."""
        key = (expect.run_id, int(expect.kind), int(expect.round))
        checked = self._checked(contributions, expect, plan=plan, signers=signers,
                                secret=secret, full_only=full_only)
        if isinstance(checked, VerifiedSum):
            return checked
        if is_attested(contributions):
            assert secret is not None  # checked in check_attested
            length = layout_length(list(expect.layout))
            opened = VerifiedSum(values=decrypt_vector(secret, list(contributions.sum),
                                                       length=length),
                                 examples=int(contributions.example_total),
                                 contributors=checked, digests=tuple(contributions.digests),
                                 attested=True)
            fingerprint = _set_fingerprint(contributions)
        else:
            envelopes = list(contributions.envelopes)
            opened = VerifiedSum(values=_sum(envelopes, expect, secret),
                                 examples=sum(int(e.example_count) for e in envelopes),
                                 contributors=checked,
                                 digests=tuple(e.digest for e in envelopes))
            fingerprint = _fingerprint(envelopes)
        self._cache[key] = opened
        self._fingerprints[key] = fingerprint
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            dropped, _ = self._cache.popitem(last=False)
            self._fingerprints.pop(dropped, None)
        return opened

    def _checked(self, contributions: agent_pb2.ContributionSet, expect: Expected, *,
                 plan: StudyPlan, signers: Mapping[str, str], secret: bytes | None,
                 full_only: bool) -> VerifiedSum | tuple[str, ...]:
        """A cached sum when this exact set was opened before; else the verified senders."""
        if contributions.kind != expect.kind or contributions.round != expect.round:
            raise _bad(expect, "the set is labelled with another kind or round")
        key = (expect.run_id, int(expect.kind), int(expect.round))
        digests = tuple(contributions.digests)
        cached = self._cache.get(key)
        if is_attested(contributions):
            if full_only:
                raise _bad(expect, "this task decrypts for release: it must carry every "
                                   "contribution, not an attested sum",
                           ErrorCode.PERMISSION_DENIED)
            if cached is not None and \
                    self._fingerprints.get(key) == _set_fingerprint(contributions):
                return cached
            return check_attested(contributions, plan=plan, plan_hash=expect.plan_hash,
                                  run_id=expect.run_id, layout=expect.layout,
                                  signers=signers, secret=secret)
        if not contributions.envelopes:
            if cached is None or cached.digests != digests:
                raise _bad(expect, "named by digests only, but not verified here before",
                           ErrorCode.NOT_CACHED)
            if full_only and cached.attested:
                raise _bad(expect, "verified here only as an attested sum: this task decrypts "
                                   "for release and must carry every contribution",
                           ErrorCode.NOT_CACHED)
            self._cache.move_to_end(key)
            return cached
        envelopes = list(contributions.envelopes)
        if digests and digests != tuple(e.digest for e in envelopes):
            raise _bad(expect, "the digests listed do not match the contributions")
        if cached is not None and self._fingerprints.get(key) == _fingerprint(envelopes):
            return cached
        return _check_all(envelopes, expect, plan=plan, signers=signers, secret=secret)

    def cached(self, *, run_id: str, kind: int, round_: int) -> VerifiedSum | None:
        """A sum verified earlier in this run, if kept."""
        return self._cache.get((run_id, int(kind), int(round_)))


def _fingerprint(envelopes: Sequence[agent_pb2.UpdateEnvelope]) -> str:
    """sha256 over the contributions exactly as received (every field, signatures included)."""
    digest = hashlib.sha256()
    for env in envelopes:
        data = env.SerializeToString(deterministic=True)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _set_fingerprint(contributions: agent_pb2.ContributionSet) -> str:
    """sha256 over an attested set exactly as received."""
    return hashlib.sha256(contributions.SerializeToString(deterministic=True)).hexdigest()


def _check_all(envelopes: Sequence[agent_pb2.UpdateEnvelope], expect: Expected, *,
               plan: StudyPlan, signers: Mapping[str, str],
               secret: bytes | None) -> tuple[str, ...]:
    if plan.he.enabled and secret is None:
        raise _bad(expect, "this site holds no key for the study", ErrorCode.KEY_MISSING)
    fingerprint = fingerprint_of_secret(secret) if plan.he.enabled and secret else ""
    sites: list[str] = []
    for env in envelopes:
        _check_one(env, expect, plan=plan, signers=signers, fingerprint=fingerprint)
        if env.site in sites:
            raise _bad(expect, f"two contributions from site '{env.site}'", ErrorCode.DUPLICATE)
        sites.append(env.site)
    need = plan.federation.min_sites
    if len(sites) < need:
        raise _bad(expect, f"{len(sites)} site(s) contributed, the plan needs at least {need}",
                   ErrorCode.PERMISSION_DENIED)
    return tuple(sites)


def _check_one(env: agent_pb2.UpdateEnvelope, expect: Expected, *, plan: StudyPlan,
               signers: Mapping[str, str], fingerprint: str) -> None:
    who = f"contribution of '{env.site}'"
    if env.version != ENVELOPE_VERSION:
        raise _bad(expect, f"{who}: unsupported envelope version {env.version}")
    if (env.study, env.run_id, env.kind, env.round) != (
            expect.plan_hash, expect.run_id, expect.kind, expect.round):
        raise _bad(expect, f"{who}: made for another study, run, kind or round",
                   ErrorCode.FOREIGN_STUDY)
    public = signers.get(env.site)
    if public is None:
        raise _bad(expect, f"{who}: not a site permitted to contribute to this study",
                   ErrorCode.BAD_SIGNATURE)
    if list(env.layout) != layout_to_proto(expect.layout):
        raise _bad(expect, f"{who}: layout differs from the plan's")
    if env.example_count < 1:
        raise _bad(expect, f"{who}: no examples")
    length = layout_length(list(expect.layout))
    if env.encrypted != plan.he.enabled:
        raise _bad(expect, f"{who}: {'plaintext' if plan.he.enabled else 'encrypted'} "
                           "contribution where the plan says otherwise")
    if plan.he.enabled:
        chunks = math.ceil(length / (plan.he.poly_modulus_degree // 2))
        if env.context_fingerprint != fingerprint:
            raise _bad(expect, f"{who}: encrypted under another key",
                       ErrorCode.FINGERPRINT_MISMATCH)
        if len(env.ciphertexts) != chunks or len(env.values):
            raise _bad(expect, f"{who}: wrong number of ciphertexts")
        digest = payload_digest(ciphertexts=list(env.ciphertexts))
    else:
        if len(env.values) != length or len(env.ciphertexts) or env.context_fingerprint:
            raise _bad(expect, f"{who}: wrong number of values")
        if not np.isfinite(np.asarray(env.values, dtype=np.float64)).all():
            raise _bad(expect, f"{who}: non-finite values")
        digest = payload_digest(values=list(env.values))
    if digest != env.digest:
        raise _bad(expect, f"{who}: payload does not match its digest")
    try:
        verify(public, env.signature.hex(), ENVELOPE_DOMAIN, envelope_claims(env))
    except TesseraError:
        raise _bad(expect, f"{who}: signature does not verify", ErrorCode.BAD_SIGNATURE) \
            from None


def _sum(envelopes: Sequence[agent_pb2.UpdateEnvelope], expect: Expected,
         secret: bytes | None) -> np.ndarray:
    length = layout_length(list(expect.layout))
    if envelopes[0].encrypted:
        assert secret is not None  # checked in _check_all
        total = add_encrypted(secret, [list(e.ciphertexts) for e in envelopes])
        return decrypt_vector(secret, total, length=length)
    return np.sum([np.asarray(e.values, dtype=np.float64) for e in envelopes], axis=0)

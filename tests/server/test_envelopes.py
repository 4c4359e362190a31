"""The coordinator's checks of the sites' signed contributions, on hand-built envelopes."""

from __future__ import annotations

import numpy as np
import pytest

from client_app.agent.envelopes import seal_vector
from client_app.agent.signing import sign_envelope
from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from privacy.ckks import CkksParams, generate_keys
from privacy.digest import payload_digest
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from server.envelopes import (
    Expectation,
    ReplayGuard,
    by_reference,
    check_envelope,
    contribution_set,
)

PLAN = "a" * 64
RUN = "7"
LENGTH = 31
PARAMS = CkksParams()
SITES = {name: SigningKey.generate() for name in ("s1", "s2", "s3")}
PUBLIC = {name: key.public_hex for name, key in SITES.items()}


@pytest.fixture(scope="module")
def keys():
    return generate_keys(PARAMS)


def _expect(keys, round_: int = 1, encrypted: bool = True) -> Expectation:
    return Expectation(plan_hash=PLAN, run_id=RUN, round=round_, kind=agent_pb2.ENVELOPE_WEIGHTS,
                       length=LENGTH, encrypted=encrypted,
                       fingerprint=keys.fingerprint if encrypted else "",
                       slots=PARAMS.slots, poly_modulus_degree=PARAMS.poly_modulus_degree,
                       primes=len(PARAMS.coeff_mod_bit_sizes))


def _env(keys, site: str, values: np.ndarray, *, round_: int = 1, count: int = 10,
         encrypted: bool = True, study: str = PLAN, sign: bool = True,
         run: str = RUN) -> agent_pb2.UpdateEnvelope:
    layout = [TensorSlot(name="w", shape=(LENGTH,), offset=0, length=LENGTH)]
    env = seal_vector(kind=agent_pb2.ENVELOPE_WEIGHTS, plan_hash=study, run_id=run,
                      round_=round_, site=site, example_count=count, values=values,
                      layout=layout, secret_context=keys.secret_context if encrypted else None)
    if sign:
        sign_envelope(env, SITES[site])
    return env


def _check(keys, env, *, sender: str = "s1", expect=None, guard=None, context=None) -> None:
    check_envelope(env, sender=sender, expect=expect or _expect(keys),
                   guard=guard or ReplayGuard(), signing_keys=PUBLIC,
                   evaluation_context=context)


def test_signed_contributions_pass_and_form_a_set_in_order(keys) -> None:
    guard = ReplayGuard()
    envs = [_env(keys, s, np.full(LENGTH, float(i))) for i, s in enumerate(SITES)]
    for env in envs:
        _check(keys, env, sender=env.site, guard=guard, context=keys.evaluation_context)
    full = contribution_set(agent_pb2.ENVELOPE_WEIGHTS, 1, envs)
    assert list(full.digests) == [e.digest for e in envs]
    ref = by_reference(full)
    assert not ref.envelopes and list(ref.digests) == list(full.digests)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: setattr(e, "study", "b" * 64), ErrorCode.FOREIGN_STUDY),
        (lambda e: setattr(e, "run_id", "8"), ErrorCode.FOREIGN_STUDY),
        (lambda e: setattr(e, "site", "someone-else"), ErrorCode.BAD_ENVELOPE),
        (lambda e: setattr(e, "version", 9), ErrorCode.BAD_ENVELOPE),
        (lambda e: setattr(e, "kind", agent_pb2.ENVELOPE_STATS), ErrorCode.BAD_ENVELOPE),
        (lambda e: setattr(e, "context_fingerprint", "0" * 64), ErrorCode.FINGERPRINT_MISMATCH),
        (lambda e: setattr(e, "example_count", 0), ErrorCode.BAD_ENVELOPE),
        (lambda e: setattr(e, "example_count", 11), ErrorCode.BAD_SIGNATURE),
        (lambda e: setattr(e, "round", 2), ErrorCode.WRONG_ROUND),
        (lambda e: e.ciphertexts.append(b"x" * 10), ErrorCode.BAD_ENVELOPE),
        (lambda e: e.ciphertexts.__setitem__(0, e.ciphertexts[0][:-1] + b"\0"),
         ErrorCode.BAD_ENVELOPE),
        (lambda e: e.ciphertexts.__setitem__(0, b"y" * 3_000_000), ErrorCode.OVERSIZED),
        (lambda e: e.ClearField("signature"), ErrorCode.BAD_SIGNATURE),
    ],
)
def test_malformed_contributions_are_rejected_with_a_reason(keys, mutate, code) -> None:
    env = _env(keys, "s1", np.ones(LENGTH))
    mutate(env)
    with pytest.raises(TesseraError) as err:
        _check(keys, env)
    assert err.value.code == code
    assert err.value.message


def test_contribution_signed_by_another_site_is_rejected(keys) -> None:
    env = _env(keys, "s1", np.ones(LENGTH), sign=False)
    sign_envelope(env, SITES["s2"])
    with pytest.raises(TesseraError) as err:
        _check(keys, env)
    assert err.value.code == ErrorCode.BAD_SIGNATURE


def test_replay_of_an_earlier_round_and_duplicates_are_rejected(keys) -> None:
    guard = ReplayGuard()
    first = _env(keys, "s1", np.ones(LENGTH), round_=1)
    _check(keys, first, expect=_expect(keys, 1), guard=guard)
    with pytest.raises(TesseraError) as err:
        _check(keys, first, expect=_expect(keys, 2), guard=guard)
    assert err.value.code == ErrorCode.REPLAY
    stale = _env(keys, "s2", np.ones(LENGTH), round_=1)
    with pytest.raises(TesseraError) as err:
        _check(keys, stale, sender="s2", expect=_expect(keys, 2), guard=guard)
    assert err.value.code == ErrorCode.REPLAY
    again = _env(keys, "s1", np.full(LENGTH, 2.0), round_=1)
    with pytest.raises(TesseraError) as err:
        _check(keys, again, expect=_expect(keys, 1), guard=guard)
    assert err.value.code == ErrorCode.DUPLICATE


def test_encrypted_contribution_is_refused_when_the_plan_says_plaintext(keys) -> None:
    env = _env(keys, "s1", np.ones(LENGTH))
    with pytest.raises(TesseraError) as err:
        _check(keys, env, expect=_expect(keys, encrypted=False))
    # A ciphertext is far larger than the plaintext vector the plan allows.
    assert err.value.code in (ErrorCode.BAD_ENVELOPE, ErrorCode.OVERSIZED)


def test_garbage_ciphertext_with_a_matching_digest_is_rejected(keys) -> None:
    env = _env(keys, "s1", np.ones(LENGTH), sign=False)
    env.ciphertexts[0] = b"\x00" * 1000
    env.digest = payload_digest(ciphertexts=list(env.ciphertexts))
    sign_envelope(env, SITES["s1"])
    with pytest.raises(TesseraError) as err:
        _check(keys, env, context=keys.evaluation_context)
    assert err.value.code == ErrorCode.BAD_CIPHERTEXT

"""The coordinator's envelope checks and encrypted sums, on hand-built envelopes."""

from __future__ import annotations

import numpy as np
import pytest

from client_app.agent.envelopes import seal_vector
from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from privacy.ckks import CkksParams, can_decrypt, decrypt_vector, generate_keys
from protos.tessera.v1 import agent_pb2
from server.envelopes import Expectation, ReplayGuard, check_envelope, sum_envelopes

PLAN = "a" * 64
LENGTH = 31
PARAMS = CkksParams()


@pytest.fixture(scope="module")
def keys():
    return generate_keys(PARAMS)


def _expect(keys, round_: int = 1, encrypted: bool = True) -> Expectation:
    return Expectation(plan_hash=PLAN, round=round_, kind="weights", length=LENGTH,
                       encrypted=encrypted, fingerprint=keys.fingerprint if encrypted else "",
                       slots=PARAMS.slots, poly_modulus_degree=PARAMS.poly_modulus_degree,
                       primes=len(PARAMS.coeff_mod_bit_sizes))


def _env(keys, site: str, values: np.ndarray, *, round_: int = 1, count: int = 10,
         encrypted: bool = True, study: str = PLAN) -> agent_pb2.UpdateEnvelope:
    layout = [TensorSlot(name="w", shape=(LENGTH,), offset=0, length=LENGTH)]
    return seal_vector(kind="weights", plan_hash=study, round_=round_, site=site,
                       example_count=count, values=values, layout=layout,
                       secret_context=keys.secret_context if encrypted else None)


def test_encrypted_sum_matches_plaintext_sum(keys) -> None:
    rng = np.random.default_rng(0)
    vectors = [rng.uniform(-10, 10, LENGTH) * n for n in (50, 120, 300)]
    counts = (50, 120, 300)
    envs = [_env(keys, f"s{i}", v, count=n) for i, (v, n) in enumerate(zip(vectors, counts))]
    guard = ReplayGuard()
    for env in envs:
        check_envelope(env, sender=env.site, expect=_expect(keys), guard=guard)
    agg = sum_envelopes(envs, expect=_expect(keys), evaluation_context=keys.evaluation_context)
    assert agg.example_count == 470 and agg.contributors == 3
    assert not can_decrypt(keys.evaluation_context)
    total = decrypt_vector(keys.secret_context, list(agg.ciphertexts), length=LENGTH)
    np.testing.assert_allclose(total / 470, np.sum(vectors, axis=0) / 470, atol=1e-6)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: setattr(e, "study", "b" * 64), ErrorCode.FOREIGN_STUDY),
        (lambda e: setattr(e, "site", "someone-else"), ErrorCode.BAD_ENVELOPE),
        (lambda e: setattr(e, "version", 9), ErrorCode.BAD_ENVELOPE),
        (lambda e: setattr(e, "context_fingerprint", "0" * 64), ErrorCode.FINGERPRINT_MISMATCH),
        (lambda e: setattr(e, "example_count", 0), ErrorCode.BAD_ENVELOPE),
        (lambda e: setattr(e, "round", 2), ErrorCode.WRONG_ROUND),
        (lambda e: e.ciphertexts.append(b"x" * 10), ErrorCode.BAD_ENVELOPE),
        (lambda e: e.ciphertexts.__setitem__(0, e.ciphertexts[0][:-1] + b"\0"),
         ErrorCode.BAD_ENVELOPE),
        (lambda e: e.ciphertexts.__setitem__(0, b"y" * 3_000_000), ErrorCode.OVERSIZED),
    ],
)
def test_malformed_envelopes_are_rejected_with_a_reason(keys, mutate, code) -> None:
    env = _env(keys, "s1", np.ones(LENGTH))
    mutate(env)
    with pytest.raises(TesseraError) as err:
        check_envelope(env, sender="s1", expect=_expect(keys), guard=ReplayGuard())
    assert err.value.code == code
    assert err.value.message


def test_replay_of_an_earlier_round_and_duplicates_are_rejected(keys) -> None:
    guard = ReplayGuard()
    first = _env(keys, "s1", np.ones(LENGTH), round_=1)
    check_envelope(first, sender="s1", expect=_expect(keys, 1), guard=guard)
    with pytest.raises(TesseraError) as err:
        check_envelope(first, sender="s1", expect=_expect(keys, 2), guard=guard)
    assert err.value.code == ErrorCode.REPLAY
    stale = _env(keys, "s2", np.ones(LENGTH), round_=1)
    with pytest.raises(TesseraError) as err:
        check_envelope(stale, sender="s2", expect=_expect(keys, 2), guard=guard)
    assert err.value.code == ErrorCode.REPLAY
    again = _env(keys, "s1", np.full(LENGTH, 2.0), round_=1)
    with pytest.raises(TesseraError) as err:
        check_envelope(again, sender="s1", expect=_expect(keys, 1), guard=guard)
    assert err.value.code == ErrorCode.DUPLICATE


def test_plaintext_envelopes_sum_without_a_context(keys) -> None:
    envs = [_env(keys, f"s{i}", np.full(LENGTH, float(i)), encrypted=False) for i in (1, 2)]
    expect = _expect(keys, encrypted=False)
    guard = ReplayGuard()
    for env in envs:
        check_envelope(env, sender=env.site, expect=expect, guard=guard)
    agg = sum_envelopes(envs, expect=expect, evaluation_context=None)
    assert list(agg.values) == [3.0] * LENGTH


def test_encrypted_envelope_is_refused_when_the_plan_says_plaintext(keys) -> None:
    env = _env(keys, "s1", np.ones(LENGTH))
    expect = _expect(keys, encrypted=False)
    with pytest.raises(TesseraError) as err:
        check_envelope(env, sender="s1", expect=expect, guard=ReplayGuard())
    # A ciphertext is far larger than the plaintext vector the plan allows.
    assert err.value.code in (ErrorCode.BAD_ENVELOPE, ErrorCode.OVERSIZED)


def test_garbage_ciphertext_with_a_matching_digest_is_rejected_before_the_sum(keys) -> None:
    from privacy.digest import payload_digest

    env = _env(keys, "s1", np.ones(LENGTH))
    env.ciphertexts[0] = b"\x00" * 1000
    env.digest = payload_digest(ciphertexts=list(env.ciphertexts))
    with pytest.raises(TesseraError) as err:
        check_envelope(env, sender="s1", expect=_expect(keys), guard=ReplayGuard(),
                       evaluation_context=keys.evaluation_context)
    assert err.value.code == ErrorCode.BAD_CIPHERTEXT

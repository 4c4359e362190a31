"""The signed claims of the protocol match docs/envelope-format.md's test vectors exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from privacy.digest import payload_digest
from privacy.signing import SigningKey, signed_message
from protos.claims import (
    ATTESTATION_DOMAIN,
    ENVELOPE_DOMAIN,
    TASK_DOMAIN,
    attestation_claims,
    envelope_claims,
    task_claims,
)
from protos.tessera.v1 import agent_pb2
from protos.wire import ENVELOPE_VERSION

DOC = Path(__file__).resolve().parents[2] / "docs" / "envelope-format.md"
KEY = SigningKey(bytes(range(32)))


def _contribution() -> agent_pb2.UpdateEnvelope:
    env = agent_pb2.UpdateEnvelope(version=ENVELOPE_VERSION, study="a" * 64, run_id="7",
                                   round=1, site="site-1", kind=agent_pb2.ENVELOPE_WEIGHTS,
                                   example_count=152, values=[1.0, -2.5])
    env.layout.add(name="w", shape=[2], offset=0, length=2)
    env.digest = payload_digest(values=[1.0, -2.5])
    return env


def _documented(text: str) -> bool:
    return text in DOC.read_text(encoding="utf-8")


def test_contribution_claims_and_signature_match_the_document() -> None:
    claims = envelope_claims(_contribution())
    shown = signed_message(ENVELOPE_DOMAIN, claims).decode().replace("\x00", "\\x00")
    assert _documented(shown)
    signature = KEY.sign(ENVELOPE_DOMAIN, claims)
    assert _documented(signature[:64]) and _documented(signature[64:])
    assert _documented(KEY.public_hex)


def test_task_claims_and_signature_match_the_document() -> None:
    request = agent_pb2.TaskRequest(kind=agent_pb2.TASK_TRAIN, plan_hash="a" * 64,
                                    plan_toml=b"", round=2, run_id="7", nonce=bytes(16))
    request.model.kind, request.model.round = agent_pb2.ENVELOPE_WEIGHTS, 1
    request.model.digests.append(_contribution().digest)
    claims = task_claims(request)
    shown = signed_message(TASK_DOMAIN, claims).decode().replace("\x00", "\\x00")
    assert _documented(shown)
    signature = KEY.sign(TASK_DOMAIN, claims)
    assert _documented(signature[:64]) and _documented(signature[64:])


def test_every_field_but_the_signature_is_claimed() -> None:
    env = _contribution()
    claimed = set(envelope_claims(env)) | {"signature", "values", "ciphertexts"}
    names = {f.name for f in env.DESCRIPTOR.fields}
    renamed = {"context_fingerprint": "fingerprint"}
    assert {renamed.get(n, n) for n in names} <= claimed


def _attested() -> agent_pb2.ContributionSet:
    cset = agent_pb2.ContributionSet(kind=agent_pb2.ENVELOPE_WEIGHTS, round=1,
                                     example_total=152, sum=[bytes(4)],
                                     sum_digest=payload_digest(ciphertexts=[bytes(4)]))
    cset.digests.append(_contribution().digest)
    cset.sites.append("site-1")
    return cset


def test_attestation_claims_and_signature_match_the_document() -> None:
    claims = attestation_claims(_attested(), plan_hash="a" * 64, run_id="7",
                                fingerprint="ab" * 8, attester="site-1")
    shown = signed_message(ATTESTATION_DOMAIN, claims).decode().replace("\x00", "\\x00")
    assert _documented(shown)
    signature = KEY.sign(ATTESTATION_DOMAIN, claims)
    assert _documented(signature[:64]) and _documented(signature[64:])


def _reference_verifier() -> dict:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 11. A reference verifier"):text.index("## 12.")]
    code = section[section.index("```python") + len("```python"):]
    namespace: dict = {}
    exec(code[:code.index("```")], namespace)  # the document's own code
    return namespace


def test_the_documented_verifier_checks_a_real_attestation() -> None:
    verifier = _reference_verifier()
    cset = _attested()
    claims = attestation_claims(cset, plan_hash="a" * 64, run_id="7", fingerprint="ab" * 8,
                                attester="site-1")
    cset.attestations.add(site="site-1",
                          signature=bytes.fromhex(KEY.sign(ATTESTATION_DOMAIN, claims)))
    keys = {"site-1": KEY.public_hex}
    verifier["verify_attestation"](cset, "a" * 64, "7", "ab" * 8, keys)
    cset.example_total += 1  # anything signed, changed, fails
    with pytest.raises(InvalidSignature):
        verifier["verify_attestation"](cset, "a" * 64, "7", "ab" * 8, keys)

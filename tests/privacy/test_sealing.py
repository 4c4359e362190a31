"""Sealing secrets to one site's X25519 key, signed by the sender's Ed25519 key."""

from __future__ import annotations

import json
import os

import pytest

from common.errors import ErrorCode, TesseraError
from privacy.sealing import SealingKey, inspect_sealed, open_sealed, seal
from privacy.signing import SigningKey

CONTEXT = {"plan_hash": "ab" * 32, "key_fingerprint": "cd" * 16}


@pytest.fixture(scope="module")
def custodian() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def site_a() -> SealingKey:
    return SealingKey.generate()


def _seal(plaintext: bytes, recipient_key: SealingKey, sender_key: SigningKey, *,
          recipient: str = "site-a", purpose: str = "ckks-secret") -> bytes:
    return seal(plaintext, recipient_public_hex=recipient_key.public_hex, recipient=recipient,
                sender="coordinator", sender_key=sender_key, purpose=purpose, context=CONTEXT)


def _open(blob: bytes, recipient_key: SealingKey, sender_key: SigningKey, *,
          recipient: str = "site-a", purpose: str = "ckks-secret") -> tuple[bytes, dict]:
    return open_sealed(blob, recipient_key=recipient_key, recipient=recipient,
                       sender_public_hex=sender_key.public_hex, purpose=purpose)


def _header_span(blob: bytes) -> tuple[int, int]:
    return 9, 9 + int.from_bytes(blob[5:9], "big")


def test_intended_recipient_opens_and_gets_context(
        custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"serialized secret context", site_a, custodian)
    plaintext, context = _open(blob, site_a, custodian)
    assert plaintext == b"serialized secret context"
    assert context == CONTEXT


def test_sealing_twice_gives_different_blobs(custodian: SigningKey, site_a: SealingKey) -> None:
    first, second = _seal(b"x", site_a, custodian), _seal(b"x", site_a, custodian)
    assert first != second
    assert inspect_sealed(first)["ephemeral_public"] != inspect_sealed(second)["ephemeral_public"]


def test_another_sites_key_cannot_open(custodian: SigningKey, site_a: SealingKey) -> None:
    site_b = SealingKey.generate()
    blob = _seal(b"for a only", site_a, custodian)
    for recipient in ("site-a", "site-b"):
        with pytest.raises(TesseraError, match="sealed for another site") as excinfo:
            _open(blob, site_b, custodian, recipient=recipient)
        assert excinfo.value.code is ErrorCode.PERMISSION_DENIED


def test_recipient_name_must_match(custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"secret", site_a, custodian, recipient="site-a")
    with pytest.raises(TesseraError, match="another site") as excinfo:
        _open(blob, site_a, custodian, recipient="site-c")
    assert excinfo.value.code is ErrorCode.PERMISSION_DENIED


def test_any_changed_byte_after_the_frame_fails(
        custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"0123456789" * 4, site_a, custodian)
    start, end = _header_span(blob)
    for index in [*range(start, end, 7), *range(end, len(blob))]:
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(TesseraError) as excinfo:
            _open(bytes(tampered), site_a, custodian)
        assert excinfo.value.code is ErrorCode.BAD_SIGNATURE


def test_broken_framing_is_data_invalid(custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"secret", site_a, custodian)
    for broken in (blob[:3], b"XXXX" + blob[4:], blob[:4] + b"\x09" + blob[5:],
                   blob[:5] + (2**31).to_bytes(4, "big") + blob[9:], blob[:40]):
        with pytest.raises(TesseraError) as excinfo:
            _open(broken, site_a, custodian)
        assert excinfo.value.code is ErrorCode.DATA_INVALID


def test_truncated_ciphertext_fails_the_signature(
        custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"secret" * 10, site_a, custodian)
    with pytest.raises(TesseraError) as excinfo:
        _open(blob[:-1], site_a, custodian)
    assert excinfo.value.code is ErrorCode.BAD_SIGNATURE


def test_signature_by_another_sender_key_is_bad_signature(
        custodian: SigningKey, site_a: SealingKey) -> None:
    impostor = SigningKey.generate()
    blob = _seal(b"forged", site_a, impostor)
    with pytest.raises(TesseraError, match=r"custodian's .*signature did not verify") as excinfo:
        _open(blob, site_a, custodian)
    assert excinfo.value.code is ErrorCode.BAD_SIGNATURE


def test_signature_is_checked_before_recipient_and_purpose(
        custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"forged", site_a, SigningKey.generate(), purpose="other")
    with pytest.raises(TesseraError) as excinfo:
        _open(blob, SealingKey.generate(), custodian, recipient="site-z")
    assert excinfo.value.code is ErrorCode.BAD_SIGNATURE


def test_purpose_mismatch_is_refused(custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"secret", site_a, custodian, purpose="ckks-secret")
    with pytest.raises(TesseraError, match="purpose") as excinfo:
        _open(blob, site_a, custodian, purpose="model-release")
    assert excinfo.value.code is ErrorCode.PERMISSION_DENIED


def test_one_megabyte_payload_round_trips(custodian: SigningKey, site_a: SealingKey) -> None:
    payload = os.urandom(1024 * 1024)
    blob = _seal(payload, site_a, custodian)
    assert _open(blob, site_a, custodian)[0] == payload


def test_inspect_shows_header_without_secret(custodian: SigningKey, site_a: SealingKey) -> None:
    blob = _seal(b"top secret bytes", site_a, custodian)
    header = inspect_sealed(blob)
    assert header["purpose"] == "ckks-secret" and header["recipient"] == "site-a"
    assert header["sender"] == "coordinator" and header["context"] == CONTEXT
    assert header["sender_public"] == custodian.public_hex
    assert header["recipient_public"] == site_a.public_hex
    assert len(bytes.fromhex(header["nonce"])) == 12
    start, end = _header_span(blob)
    assert json.loads(blob[start:end]) == header
    assert b"top secret bytes" not in blob


def test_sealing_key_repr_hides_the_private_key(site_a: SealingKey) -> None:
    assert site_a.raw.hex() not in repr(site_a) and str(site_a.raw) not in repr(site_a)
    assert len(bytes.fromhex(site_a.public_hex)) == 32


def test_invalid_inputs_name_the_parameter(custodian: SigningKey, site_a: SealingKey) -> None:
    with pytest.raises(TesseraError, match="recipient_public_hex") as excinfo:
        seal(b"x", recipient_public_hex="zz", recipient="site-a", sender="c",
             sender_key=custodian, purpose="p", context={})
    assert excinfo.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(TesseraError, match="context"):
        seal(b"x", recipient_public_hex=site_a.public_hex, recipient="site-a", sender="c",
             sender_key=custodian, purpose="p", context={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(TesseraError, match="purpose"):
        seal(b"x", recipient_public_hex=site_a.public_hex, recipient="site-a", sender="c",
             sender_key=custodian, purpose="", context={})
    with pytest.raises(TesseraError, match="recipient_public_hex"):
        seal(b"x", recipient_public_hex="00" * 32, recipient="site-a", sender="c",
             sender_key=custodian, purpose="p", context={})
    with pytest.raises(TesseraError, match="raw"):
        SealingKey(b"short")

"""The custodian-signed list of a study key's holders: signed, bound, packed, kept."""

from __future__ import annotations

import pytest

from client_app.custody.key_holders import (
    pack,
    sign_holders,
    study_key_holders,
    unpack,
    verify_holders,
)
from client_app.custody.vault import create_vault
from client_app.store.folder import init_site_dir
from common.errors import ErrorCode, TesseraError
from privacy.signing import SigningKey

PLAN, FINGERPRINT = "ab" * 32, "cd" * 32


def _document(custodian: SigningKey, *, signer: SigningKey | None = None) -> bytes:
    holders = {"a": custodian.public_hex, "b": SigningKey.generate().public_hex}
    return sign_holders(plan_hash=PLAN, fingerprint=FINGERPRINT, custodian="a",
                        holders=holders, signer=signer or custodian)


def test_a_statement_verifies_only_for_its_custodian_study_and_key() -> None:
    custodian = SigningKey.generate()
    document = _document(custodian)
    holders = verify_holders(document, custodian="a", custodian_public=custodian.public_hex,
                             plan_hash=PLAN, fingerprint=FINGERPRINT)
    assert sorted(holders) == ["a", "b"]
    for kwargs in ({"plan_hash": "ee" * 32}, {"fingerprint": "00" * 32},
                   {"custodian": "b"}, {"custodian_public": SigningKey.generate().public_hex}):
        args = {"custodian": "a", "custodian_public": custodian.public_hex,
                "plan_hash": PLAN, "fingerprint": FINGERPRINT} | kwargs
        with pytest.raises(TesseraError) as err:
            verify_holders(document, **args)
        assert err.value.code is ErrorCode.BAD_SIGNATURE, kwargs


def test_a_statement_that_omits_its_custodian_is_refused() -> None:
    custodian = SigningKey.generate()
    document = sign_holders(plan_hash=PLAN, fingerprint=FINGERPRINT, custodian="a",
                            holders={"b": SigningKey.generate().public_hex}, signer=custodian)
    with pytest.raises(TesseraError) as err:
        verify_holders(document, custodian="a", custodian_public=custodian.public_hex,
                       plan_hash=PLAN, fingerprint=FINGERPRINT)
    assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_packing_round_trips_and_a_bare_secret_is_refused() -> None:
    document = _document(SigningKey.generate())
    assert unpack(pack(document, b"secret context")) == (document, b"secret context")
    for plaintext in (b"", b"secret context", b"TSKH\x00\x00\x00\x05abc", pack(document, b"")):
        with pytest.raises(TesseraError) as err:
            unpack(plaintext)
        assert err.value.code is ErrorCode.DATA_INVALID


def test_a_malformed_statement_is_refused() -> None:
    for document in (b"not json", b"{}", b'{"statement": 1, "signature": "00"}'):
        with pytest.raises(TesseraError) as err:
            verify_holders(document, custodian="a", custodian_public="00" * 32,
                           plan_hash=PLAN, fingerprint=FINGERPRINT)
        assert err.value.code is ErrorCode.DATA_INVALID


def test_a_site_without_the_key_has_no_holders(tmp_path) -> None:
    vault = create_vault(init_site_dir(tmp_path / "s", name="s"), "a passphrase")
    with pytest.raises(TesseraError) as err:
        study_key_holders(vault, PLAN)
    assert err.value.code is ErrorCode.KEY_MISSING
    with pytest.raises(TesseraError) as err:
        study_key_holders(vault, "../../x")
    assert err.value.code is ErrorCode.CONFIG_INVALID

"""Access-policy overrides: honoured only with the federation coordinator's signature."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from privacy.signed_policy import sign_policy, signature_path, verified_policy_text
from privacy.signing import SigningKey
from server.provisioning import Federation, init_federation

POLICY = 'format = 1\n[commands]\n"site approve" = ["site_operator"]\n'


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "out", name="policies",
                           sites=["north"], archives=False)


def _coordinator(fed: Federation) -> SigningKey:
    return SigningKey(bytes.fromhex((fed.coordinator_kit / "signing.key").read_text().strip()))


def test_a_policy_signed_by_the_coordinator_reads_back(fed: Federation, tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    assert sign_policy(path, signer=_coordinator(fed), federation="policies") == \
        signature_path(path)
    assert verified_policy_text(path, fed.manifest, source="TEST") == POLICY


def test_a_signature_for_another_federation_is_refused(fed: Federation, tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    sign_policy(path, signer=_coordinator(fed), federation="elsewhere")
    with pytest.raises(TesseraError) as err:
        verified_policy_text(path, fed.manifest, source="TEST")
    assert err.value.code is ErrorCode.BAD_SIGNATURE and "another federation" in err.value.message


def test_a_malformed_signature_file_is_refused(fed: Federation, tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    signature_path(path).write_text("not json")
    with pytest.raises(TesseraError) as err:
        verified_policy_text(path, fed.manifest, source="TEST")
    assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_an_unreadable_policy_is_a_configuration_error(fed: Federation, tmp_path: Path) -> None:
    with pytest.raises(TesseraError) as err:
        verified_policy_text(tmp_path / "missing.toml", fed.manifest, source="TEST")
    assert err.value.code is ErrorCode.CONFIG_INVALID and "missing.toml" in err.value.message

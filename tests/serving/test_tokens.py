"""API tokens: shown once, stored as a hash, checked in constant time, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from common.roles import Role
from server.registry import ModelRegistry
from serving.tokens import TokenStore


@pytest.fixture
def tokens(tmp_path: Path):
    ModelRegistry.open(tmp_path / "coordinator").close()
    with TokenStore(tmp_path / "coordinator") as store:
        yield store


def test_token_is_verified_and_its_secret_is_not_stored(tokens: TokenStore,
                                                        tmp_path: Path) -> None:
    issued = tokens.create(name="ehr-gateway", role=Role.SITE_OPERATOR)
    assert issued.token.startswith(f"tsk_{issued.record.token_id}_")
    assert tokens.verify(issued.token) == issued.record
    secret = issued.token.rsplit("_", 1)[1]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "coordinator").glob("coordinator.db*"))
    assert secret.encode() not in stored
    assert issued.record.token_id.encode() in stored


def test_wrong_malformed_and_revoked_tokens_are_refused(tokens: TokenStore) -> None:
    issued = tokens.create(name="a", role=Role.AUDITOR)
    other = tokens.create(name="b", role=Role.COORDINATOR)
    forged = issued.token[:-4] + ("AAAA" if not issued.token.endswith("AAAA") else "BBBB")
    mixed = f"tsk_{issued.record.token_id}_{other.token.rsplit('_', 1)[1]}"
    for bad in (forged, mixed, "", "Bearer x", issued.token + "x"):
        assert tokens.verify(bad) is None
    revoked = tokens.revoke(issued.record.token_id)
    assert revoked.revoked_at is not None and not revoked.active
    assert tokens.verify(issued.token) is None
    assert tokens.verify(other.token) is not None
    assert [t.token_id for t in tokens.list()] == [issued.record.token_id,
                                                   other.record.token_id]


def test_revoking_an_unknown_token_and_bad_names_are_clear_errors(tokens: TokenStore) -> None:
    with pytest.raises(TesseraError) as info:
        tokens.revoke("000000000000")
    assert info.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(TesseraError) as info:
        tokens.create(name="", role=Role.AUDITOR)
    assert "name" in info.value.message

"""Keys the audit-log tests share: the logging party's signing key and the auditor's sealing
key, one of each per test module."""

from __future__ import annotations

import pytest

from privacy.sealing import SealingKey
from privacy.signing import SigningKey


@pytest.fixture(scope="module")
def party_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def auditor() -> SealingKey:
    return SealingKey.generate()

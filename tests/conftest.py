"""Suite-wide test settings."""

from __future__ import annotations

import pytest

#: Passphrase of site keystores made by tests (a test that needs none removes it).
TEST_PASSPHRASE = "test-suite passphrase"


@pytest.fixture(autouse=True)
def _site_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SITE_PASSPHRASE", TEST_PASSPHRASE)

"""Key fingerprints: what operators compare before they trust a key."""

from __future__ import annotations

import pytest

from common.errors import TesseraError
from privacy.sealing import SealingKey
from privacy.signing import SigningKey, fingerprint


def test_key_fingerprints_are_short_stable_and_distinct() -> None:
    a, b = SigningKey.generate().public_hex, SealingKey.generate().public_hex
    assert fingerprint(a) == fingerprint(a.upper()) != fingerprint(b)
    assert len(fingerprint(a)) == 39 and fingerprint(a).count(":") == 7


@pytest.mark.parametrize("bad", ["", "abc", "zz" * 32, "00" * 31])
def test_anything_but_a_32_byte_key_has_no_fingerprint(bad: str) -> None:
    with pytest.raises(TesseraError):
        fingerprint(bad)

"""Payload digests of update envelopes (what a site signs and the server re-computes)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_DOMAIN = b"tessera/envelope-payload/v1\x00"


def payload_digest(*, ciphertexts: Sequence[bytes] = (), values: Sequence[float] = ()) -> str:
    """sha256 hex over length-prefixed ciphertexts, then the float64 little-endian values."""
    h = hashlib.sha256(_DOMAIN)
    h.update(len(ciphertexts).to_bytes(8, "big"))
    for chunk in ciphertexts:
        h.update(len(chunk).to_bytes(8, "big"))
        h.update(chunk)
    array = np.asarray(values, dtype="<f8")
    h.update(int(array.size).to_bytes(8, "big"))
    h.update(array.tobytes())
    return h.hexdigest()

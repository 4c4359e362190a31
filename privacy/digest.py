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


#: Signature domain of update envelopes (see privacy.signing).
ENVELOPE_DOMAIN = "update-envelope"


def envelope_claims(*, study: str, round_: int, site: str, kind: str, example_count: int,
                    digest: str, fingerprint: str) -> dict[str, object]:
    """What a site's envelope signature covers: who sent what, for which study and round."""
    return {"study": study, "round": int(round_), "site": site, "kind": kind,
            "example_count": int(example_count), "digest": digest,
            "fingerprint": fingerprint}


#: Signature domain of a site agent's task replies.
REPLY_DOMAIN = "task-reply"


def reply_claims(*, run_id: str, plan_hash: str, kind: str, round_: int, site: str,
                 reply_sha256: str) -> dict[str, object]:
    """What a site's reply signature covers."""
    return {"run_id": run_id, "plan_hash": plan_hash, "kind": kind, "round": int(round_),
            "site": site, "reply_sha256": reply_sha256}

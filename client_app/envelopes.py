"""Site-side update envelopes: seal a weighted vector (encrypted or plain) and open aggregates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot, layout_length
from privacy.ckks import decrypt_vector, encrypt_vector, fingerprint_of_secret
from privacy.digest import payload_digest
from protos.tessera.v1 import agent_pb2

ENVELOPE_VERSION = 1


def layout_to_proto(layout: Sequence[TensorSlot]) -> list[agent_pb2.ChunkLayout]:
    """Protobuf form of a tensor layout."""
    return [
        agent_pb2.ChunkLayout(name=s.name, shape=list(s.shape), offset=s.offset, length=s.length)
        for s in layout
    ]


def layout_from_proto(items: Sequence[agent_pb2.ChunkLayout]) -> list[TensorSlot]:
    """Tensor layout from its protobuf form."""
    return [
        TensorSlot(name=i.name, shape=tuple(i.shape), offset=i.offset, length=i.length)
        for i in items
    ]


def seal_vector(
    *,
    kind: str,
    plan_hash: str,
    round_: int,
    site: str,
    example_count: int,
    values: np.ndarray,
    layout: Sequence[TensorSlot],
    secret_context: bytes | None,
) -> agent_pb2.UpdateEnvelope:
    """Wrap an already weighted vector in an envelope, encrypting it when a key is given."""
    env = agent_pb2.UpdateEnvelope(
        version=ENVELOPE_VERSION,
        study=plan_hash,
        round=round_,
        site=site,
        example_count=example_count,
        kind=kind,
        contributors=1,
    )
    env.layout.extend(layout_to_proto(layout))
    if secret_context is not None:
        chunks = encrypt_vector(secret_context, np.asarray(values, dtype=np.float64))
        env.encrypted = True
        env.context_fingerprint = fingerprint_of_secret(secret_context)
        env.ciphertexts.extend(chunks)
        env.digest = payload_digest(ciphertexts=chunks)
    else:
        plain = [float(v) for v in np.asarray(values, dtype=np.float64)]
        env.values.extend(plain)
        env.digest = payload_digest(values=plain)
    return env


def open_vector(env: agent_pb2.UpdateEnvelope, *, secret_context: bytes | None) -> np.ndarray:
    """The weighted sum an envelope carries (decrypted when encrypted), not yet divided."""
    length = layout_length(layout_from_proto(env.layout))
    if env.encrypted:
        if secret_context is None:
            raise TesseraError(ErrorCode.KEY_MISSING, "an encrypted aggregate needs the CKKS key")
        if env.context_fingerprint != fingerprint_of_secret(secret_context):
            raise TesseraError(
                ErrorCode.FINGERPRINT_MISMATCH,
                "aggregate was encrypted under another CKKS key than this site's",
            )
        return decrypt_vector(secret_context, list(env.ciphertexts), length=length)
    if len(env.values) != length:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "aggregate length does not match its layout")
    return np.asarray(env.values, dtype=np.float64)


def mean_of(env: agent_pb2.UpdateEnvelope, *, secret_context: bytes | None) -> np.ndarray:
    """The weighted mean an aggregate envelope stands for (sum divided by its weight)."""
    if env.example_count <= 0:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "aggregate has no examples")
    return open_vector(env, secret_context=secret_context) / float(env.example_count)

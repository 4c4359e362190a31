"""Site-side envelopes: seal a weighted vector (encrypted or plain), open aggregates, and put
held-out evaluation counts in their protobuf form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.errors import ErrorCode, TesseraError
from common.eval_counts import HeldOutCounts, from_vector, to_vector, vector_layout
from common.layout import TensorSlot, layout_length
from privacy.ckks import (
    CkksParams,
    check_headroom,
    decrypt_vector,
    encrypt_vector,
    fingerprint_of_secret,
)
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


def counts_to_proto(counts: HeldOutCounts) -> agent_pb2.EvalCounts:
    """Protobuf form of held-out counts (histogram counts as whole numbers)."""
    out = agent_pb2.EvalCounts(bins=counts.bins, n=counts.n, log_loss_sum=counts.log_loss_sum,
                               brier_sum=counts.brier_sum)
    for group, (pos, neg) in counts.histograms.items():
        out.histograms.append(agent_pb2.Histogram(
            group=group, pos=[int(v) for v in pos], neg=[int(v) for v in neg]))
    return out


def seal_counts(
    counts: HeldOutCounts, groups: Sequence[str], *, plan_hash: str, round_: int, site: str,
    secret_context: bytes, params: CkksParams, contributors: int,
) -> agent_pb2.UpdateEnvelope:
    """Encrypt held-out counts as one "eval" envelope in the plan's fixed layout."""
    vector = to_vector(counts, groups)
    check_headroom(params, max_abs=float(np.abs(vector).max()), contributors=contributors)
    return seal_vector(kind="eval", plan_hash=plan_hash, round_=round_, site=site,
                       example_count=counts.n, values=vector,
                       layout=vector_layout(groups, bins=counts.bins),
                       secret_context=secret_context)


def open_counts(env: agent_pb2.UpdateEnvelope, groups: Sequence[str], *,
                secret_context: bytes, bins: int) -> HeldOutCounts:
    """Decrypt a summed "eval" envelope into whole-number counts (refuses anything else)."""
    if not env.encrypted:
        raise TesseraError(ErrorCode.BAD_ENVELOPE, "summed counts must arrive encrypted")
    expected = layout_to_proto(vector_layout(groups, bins=bins))
    if list(env.layout) != expected:
        raise TesseraError(ErrorCode.BAD_ENVELOPE,
                           "summed counts do not have the plan's layout of groups and bins")
    counts = from_vector(open_vector(env, secret_context=secret_context), groups, bins=bins)
    if counts.n != env.example_count:
        raise TesseraError(ErrorCode.BAD_ENVELOPE,
                           "summed counts cover another number of rows than the envelope says")
    return counts

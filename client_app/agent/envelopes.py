"""A site's contributions as envelopes: seal a weighted vector (encrypted or plain), seal
held-out counts in the plan's fixed layout, and put counts in their protobuf form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.eval_counts import HeldOutCounts, to_vector, vector_layout
from common.layout import TensorSlot
from privacy.ckks import CkksParams, check_headroom, encrypt_vector, fingerprint_of_secret
from privacy.digest import payload_digest
from protos.tessera.v1 import agent_pb2
from protos.wire import ENVELOPE_VERSION


def layout_to_proto(layout: Sequence[TensorSlot]) -> list[agent_pb2.ChunkLayout]:
    """Protobuf form of a tensor layout."""
    return [
        agent_pb2.ChunkLayout(name=s.name, shape=list(s.shape), offset=s.offset, length=s.length)
        for s in layout
    ]


def seal_vector(
    *,
    kind: int,
    plan_hash: str,
    run_id: str,
    round_: int,
    site: str,
    example_count: int,
    values: np.ndarray,
    layout: Sequence[TensorSlot],
    secret_context: bytes | None,
) -> agent_pb2.UpdateEnvelope:
    """Wrap an already weighted vector in an (unsigned) envelope, encrypted when a key is
    given."""
    env = agent_pb2.UpdateEnvelope(
        version=ENVELOPE_VERSION, study=plan_hash, run_id=run_id, round=round_, site=site,
        example_count=example_count, kind=kind,  # type: ignore[arg-type]
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


def counts_to_proto(counts: HeldOutCounts) -> agent_pb2.EvalCounts:
    """Protobuf form of held-out counts (histogram counts as whole numbers)."""
    out = agent_pb2.EvalCounts(bins=counts.bins, n=counts.n, log_loss_sum=counts.log_loss_sum,
                               brier_sum=counts.brier_sum)
    for group, (pos, neg) in counts.histograms.items():
        out.histograms.append(agent_pb2.Histogram(
            group=group, pos=[int(v) for v in pos], neg=[int(v) for v in neg]))
    return out


def seal_counts(
    counts: HeldOutCounts, groups: Sequence[str], *, plan_hash: str, run_id: str, round_: int,
    site: str, secret_context: bytes, params: CkksParams, contributors: int,
) -> agent_pb2.UpdateEnvelope:
    """Encrypt held-out counts as one "eval" contribution in the plan's fixed layout."""
    vector = to_vector(counts, groups)
    check_headroom(params, max_abs=float(np.abs(vector).max()), contributors=contributors)
    return seal_vector(kind=agent_pb2.ENVELOPE_EVAL, plan_hash=plan_hash, run_id=run_id,
                       round_=round_, site=site, example_count=counts.n, values=vector,
                       layout=vector_layout(groups, bins=counts.bins),
                       secret_context=secret_context)

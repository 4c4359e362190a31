"""What each signature of the protocol covers: the claims of envelopes, tasks and replies.

Claims are plain JSON-able dictionaries built from protobuf fields, signed with
``privacy.signing`` under the domains below (``domain || canonical JSON``). They name every
field that matters explicitly, so an outside verifier needs no protobuf serialiser except for
the reply digest (see docs/envelope-format.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from protos.tessera.v1 import agent_pb2
from protos.wire import envelope_name, task_name

#: Signature domains.
ENVELOPE_DOMAIN = "update-envelope/v2"
TASK_DOMAIN = "task-request/v1"
REPLY_DOMAIN = "task-reply/v2"
ATTESTATION_DOMAIN = "sum-attestation/v1"


def layout_claims(layout: Any) -> list[list[Any]]:
    """A layout as ``[[name, [shape...], offset, length], ...]``."""
    return [[s.name, [int(d) for d in s.shape], int(s.offset), int(s.length)] for s in layout]


def envelope_claims(env: agent_pb2.UpdateEnvelope) -> dict[str, Any]:
    """Everything a site's contribution signature covers (every field but the payload bytes,
    which the digest stands for, and the signature itself)."""
    return {
        "version": int(env.version), "study": env.study, "run_id": env.run_id,
        "round": int(env.round), "site": env.site, "kind": envelope_name(env.kind),
        "example_count": int(env.example_count), "fingerprint": env.context_fingerprint,
        "encrypted": bool(env.encrypted), "layout": layout_claims(env.layout),
        "digest": env.digest,
    }


def set_claims(contributions: agent_pb2.ContributionSet) -> dict[str, Any] | None:
    """The reference to a contribution set a task signature covers (None when absent); an
    attested set adds its sum's digest."""
    if not contributions.digests and not contributions.envelopes:
        return None
    claims: dict[str, Any] = {"kind": envelope_name(contributions.kind),
                              "round": int(contributions.round),
                              "digests": list(contributions.digests)}
    if contributions.sum_digest:
        claims["sum_digest"] = contributions.sum_digest
    return claims


def attestation_claims(contributions: agent_pb2.ContributionSet, *, plan_hash: str,
                       run_id: str, fingerprint: str, attester: str) -> dict[str, Any]:
    """What an attester's signature covers: the study, run, kind and round of a set, who
    contributed with which payload digests, their example total, the key the contributions
    were encrypted under, the digest of their sum, and the attester's own name."""
    return {
        "study": plan_hash, "run_id": run_id, "kind": envelope_name(contributions.kind),
        "round": int(contributions.round), "sites": list(contributions.sites),
        "digests": list(contributions.digests),
        "example_total": int(contributions.example_total), "fingerprint": fingerprint,
        "sum_digest": contributions.sum_digest, "attester": attester,
    }


def task_claims(request: agent_pb2.TaskRequest) -> dict[str, Any]:
    """Everything the coordinator's task signature covers."""
    return {
        "run_id": request.run_id, "plan_hash": request.plan_hash,
        "plan_sha256": hashlib.sha256(request.plan_toml).hexdigest(),
        "kind": task_name(request.kind), "round": int(request.round),
        "nonce": request.nonce.hex(),
        "model": set_claims(request.model), "stats": set_claims(request.stats),
        "counts": set_claims(request.counts),
        # Only an attest task names the set it asks for (older claims stay as they were).
        **({"attest": set_claims(request.attest)} if request.HasField("attest") else {}),
    }


def reply_sha256(reply: agent_pb2.TaskReply) -> str:
    """sha256 hex of a reply serialised deterministically without its signature."""
    unsigned = agent_pb2.TaskReply()
    unsigned.CopyFrom(reply)
    unsigned.ClearField("signature")
    return hashlib.sha256(unsigned.SerializeToString(deterministic=True)).hexdigest()


def reply_claims(reply: agent_pb2.TaskReply, request: agent_pb2.TaskRequest) -> dict[str, Any]:
    """What a site's reply signature covers: the task it answers and the whole reply."""
    return {"run_id": request.run_id, "plan_hash": request.plan_hash,
            "kind": task_name(request.kind), "round": int(request.round),
            "nonce": request.nonce.hex(), "site": reply.site,
            "reply_sha256": reply_sha256(reply)}

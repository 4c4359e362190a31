"""The agent's signatures and the coordinator's: sign what the site sends, verify what the
coordinator asks (claims in :mod:`protos.claims`)."""

from __future__ import annotations

from privacy.signing import SigningKey, verify
from protos.claims import (
    ENVELOPE_DOMAIN,
    REPLY_DOMAIN,
    TASK_DOMAIN,
    envelope_claims,
    reply_claims,
    task_claims,
)
from protos.tessera.v1 import agent_pb2


def sign_envelope(env: agent_pb2.UpdateEnvelope, key: SigningKey) -> None:
    """Sign a contribution over every field but its signature (see protos.claims)."""
    env.ClearField("signature")
    env.signature = bytes.fromhex(key.sign(ENVELOPE_DOMAIN, envelope_claims(env)))


def sign_reply(reply: agent_pb2.TaskReply, request: agent_pb2.TaskRequest,
               key: SigningKey) -> None:
    """Sign a whole reply, binding it to the run, study, task, round and nonce it answers."""
    reply.ClearField("signature")
    reply.signature = bytes.fromhex(key.sign(REPLY_DOMAIN, reply_claims(reply, request)))


def verify_task(request: agent_pb2.TaskRequest, coordinator_key: str) -> None:
    """BAD_SIGNATURE unless the coordinator of this federation signed the task."""
    verify(coordinator_key, request.signature.hex(), TASK_DOMAIN, task_claims(request))

"""Task messages for site agents and their replies (Flower <-> protobuf), signed both ways.

Every task is signed with the coordinator's key (claims in :mod:`protos.claims`) and carries
a fresh nonce; every reply must be signed by the site the node was admitted as, over the
task's claims and the whole reply.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import Message

from common.errors import TesseraError
from privacy.signing import SigningKey, verify
from protos.claims import REPLY_DOMAIN, TASK_DOMAIN, reply_claims, task_claims
from protos.tessera.v1 import agent_pb2
from protos.wire import NONCE_BYTES, message_type, pack_payload, unpack_payload


@dataclass(frozen=True)
class Reply:
    """One site's answer: the decoded reply, or why there is none."""

    node_id: int
    reply: agent_pb2.TaskReply | None
    failure: str
    size: int


def sign_task(request: agent_pb2.TaskRequest, key: SigningKey) -> agent_pb2.TaskRequest:
    """Give a task a fresh nonce and the coordinator's signature (in place; returned)."""
    request.nonce = secrets.token_bytes(NONCE_BYTES)
    request.ClearField("signature")
    request.signature = bytes.fromhex(key.sign(TASK_DOMAIN, task_claims(request)))
    return request


def build_message(request: agent_pb2.TaskRequest, node: int) -> tuple[Message, int]:
    """The Flower message carrying a signed request to one node, and its payload size."""
    payload = request.SerializeToString()
    return Message(content=pack_payload(payload), dst_node_id=node,
                   message_type=message_type(request.kind)), len(payload)


@dataclass(frozen=True)
class ReplyCheck:
    """What authenticates replies: the request each node got, site keys, node binding."""

    requests: dict[int, agent_pb2.TaskRequest]
    signing_keys: dict[str, str]
    names: dict[int, str] | None = None


def _authentic(node: int, reply: agent_pb2.TaskReply, check: ReplyCheck) -> str:
    """Empty if the reply may be used, else why not."""
    if check.names is not None and check.names.get(node) != reply.site:
        return "reply names another site than the one admitted on this node"
    public = check.signing_keys.get(reply.site)
    request = check.requests.get(node)
    if public is None or not reply.signature or request is None:
        return "reply is not signed by a site of this federation"
    try:
        verify(public, reply.signature.hex(), REPLY_DOMAIN, reply_claims(reply, request))
    except TesseraError:
        return "reply signature does not verify"
    return ""


def read_replies(replies: Iterable[Message], check: ReplyCheck) -> list[Reply]:
    """Decode reply messages; transport errors, undecodable and unauthentic replies fail."""
    out: list[Reply] = []
    for msg in replies:
        node = int(msg.metadata.src_node_id)
        if msg.has_error():
            out.append(Reply(node, None, f"node error {msg.error.code}", 0))
            continue
        try:
            data = unpack_payload(msg.content)
            reply = agent_pb2.TaskReply.FromString(data)
        except Exception:  # undecodable reply: report, never crash the round
            out.append(Reply(node, None, "undecodable reply", 0))
            continue
        problem = _authentic(node, reply, check)
        if problem and not reply.ok and not reply.site and not reply.signature:
            # The node's ClientApp shim (it holds no key) reporting that it could not reach
            # its agent: the site is out of this step, nothing it says is used.
            out.append(Reply(node, None, f"node failure: {reply.reason[:200]}", len(data)))
            continue
        if problem:
            out.append(Reply(node, None, f"bad_signature: {problem}", len(data)))
            continue
        out.append(Reply(node, reply, "", len(data)))
    return out

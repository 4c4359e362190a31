"""Building task messages for site agents and reading their replies (Flower <-> protobuf)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import Array, ArrayRecord, Message, RecordDict

from common.errors import TesseraError
from privacy.digest import REPLY_DOMAIN, reply_claims
from privacy.signing import verify
from protos.tessera.v1 import agent_pb2

#: Record and array names shared with the ClientApp shim (the wire convention).
RECORD, ARRAY = "tessera", "payload"


def pack_payload(data: bytes) -> RecordDict:
    """Opaque bytes as Flower content."""
    array = Array(dtype="bytes", shape=(len(data),), stype="raw", data=data)
    return RecordDict({RECORD: ArrayRecord({ARRAY: array})})


def unpack_payload(content: RecordDict) -> bytes:
    """The opaque bytes of Flower content; ValueError if absent."""
    try:
        return bytes(content.array_records[RECORD][ARRAY].data)
    except KeyError as err:
        raise ValueError("message carries no Tessera payload") from err


@dataclass(frozen=True)
class Reply:
    """One site's answer: the decoded reply, or why there is none."""

    node_id: int
    reply: agent_pb2.TaskReply | None
    failure: str
    size: int


def message_type(kind: str) -> str:
    """Flower message type that carries a task kind."""
    if kind == "train":
        return "train"
    if kind == "evaluate":
        return "evaluate"
    return "query"


def build_messages(
    request: agent_pb2.TaskRequest, nodes: Iterable[int]
) -> tuple[list[Message], int]:
    """One message per node carrying the same request; returns them and the payload size."""
    payload = request.SerializeToString()
    messages = [
        Message(
            content=pack_payload(payload),
            dst_node_id=node,
            message_type=message_type(request.kind),
        )
        for node in nodes
    ]
    return messages, len(payload)


@dataclass(frozen=True)
class ReplyCheck:
    """What authenticates replies to one request: site keys and the node-to-site binding."""

    request: agent_pb2.TaskRequest
    signing_keys: dict[str, str] | None
    names: dict[int, str] | None = None


def _authentic(node: int, reply: agent_pb2.TaskReply, check: ReplyCheck) -> str:
    """Empty if the reply may be used, else why not."""
    if check.names is not None and check.names.get(node) != reply.site:
        return "reply names another site than the one admitted on this node"
    if check.signing_keys is None:
        return ""
    public = check.signing_keys.get(reply.site)
    if public is None or not reply.signature:
        return "reply is not signed by a site of this federation"
    signature = reply.signature.hex()
    unsigned = agent_pb2.TaskReply()
    unsigned.CopyFrom(reply)
    unsigned.ClearField("signature")
    digest = hashlib.sha256(unsigned.SerializeToString(deterministic=True)).hexdigest()
    req = check.request
    claims = reply_claims(run_id=req.run_id, plan_hash=req.plan_hash, kind=req.kind,
                          round_=req.round, site=reply.site, reply_sha256=digest)
    try:
        verify(public, signature, REPLY_DOMAIN, claims)
    except TesseraError:
        return "reply signature does not verify"
    return ""


def read_replies(replies: Iterable[Message], check: ReplyCheck | None = None) -> list[Reply]:
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
        problem = _authentic(node, reply, check) if check is not None else ""
        if problem:
            out.append(Reply(node, None, f"bad_signature: {problem}", len(data)))
            continue
        out.append(Reply(node, reply, "", len(data)))
    return out

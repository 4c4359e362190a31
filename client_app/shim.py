"""The Flower ClientApp shim: forwards every Flower message to the site agent.

Flower runs this ClientApp from the app bundle the coordinator submits, so it is treated as
coordinator-shipped code (DESIGN.md, promise 4): it never opens data, keys or the ledger. It
only moves the opaque request bytes to the site agent's local API (a Unix socket named in the
SuperNode's node config as ``agent-address``) and moves the agent's reply back. It imports
neither torch nor tenseal, which keeps every round's ClientApp start-up cheap.
"""

from __future__ import annotations

import grpc
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from protos.tessera.v1 import agent_pb2

#: Name of the ArrayRecord and Array that carry the serialised TaskRequest / TaskReply.
PAYLOAD_RECORD = "tessera"
PAYLOAD_ARRAY = "payload"
#: gRPC message limit for the local hop (ciphertexts are large).
MAX_LOCAL_MESSAGE = 512 * 1024 * 1024
AGENT_TIMEOUT_S = 1800.0

app = ClientApp()


def pack_payload(data: bytes) -> RecordDict:
    """Wrap opaque bytes into a RecordDict (Flower chunks large arrays itself)."""
    array = Array(dtype="bytes", shape=(len(data),), stype="raw", data=data)
    return RecordDict({PAYLOAD_RECORD: ArrayRecord({PAYLOAD_ARRAY: array})})


def unpack_payload(content: RecordDict) -> bytes:
    """Return the opaque bytes carried by a RecordDict built with :func:`pack_payload`."""
    record = content.array_records.get(PAYLOAD_RECORD)
    if record is None or PAYLOAD_ARRAY not in record:
        raise ValueError("message carries no Tessera payload")
    return bytes(record[PAYLOAD_ARRAY].data)


def _failure(code: str, reason: str) -> bytes:
    return agent_pb2.TaskReply(ok=False, error_code=code, reason=reason).SerializeToString()


def forward(request: bytes, address: str) -> bytes:
    """Send a serialised TaskRequest to the site agent and return the serialised reply."""
    options = [
        ("grpc.max_send_message_length", MAX_LOCAL_MESSAGE),
        ("grpc.max_receive_message_length", MAX_LOCAL_MESSAGE),
    ]
    with grpc.insecure_channel(address, options=options) as channel:
        handle = channel.unary_unary(
            "/tessera.v1.SiteAgent/Handle",
            request_serializer=None,
            response_deserializer=None,
        )
        try:
            return bytes(handle(request, timeout=AGENT_TIMEOUT_S))
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            return _failure("process_failed", f"site agent unreachable ({code})")


def _handle(message: Message, context: Context) -> Message:
    address = str(context.node_config.get("agent-address", ""))
    if not address:
        reply = _failure("config_invalid", "SuperNode has no agent-address in its node config")
    else:
        try:
            request = unpack_payload(message.content)
        except ValueError as err:
            reply = _failure("bad_envelope", str(err))
        else:
            reply = forward(request, address)
    return Message(pack_payload(reply), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Forward a training task."""
    return _handle(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Forward an evaluation task."""
    return _handle(message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Forward any other task (hello, federation statistics, release)."""
    return _handle(message, context)


__all__ = ["app", "forward", "pack_payload", "unpack_payload"]

"""The Flower ClientApp shim: forwards every Flower message to the site agent.

Flower runs this ClientApp from the app bundle the coordinator submits, so it is treated as
coordinator-shipped code (DESIGN.md, promise 4): it never opens data, keys or the ledger. It
only moves the opaque request bytes to the site agent's local API (a Unix socket named in the
SuperNode's node config as ``agent-address``) and moves the agent's reply back. It imports
neither torch nor tenseal, which keeps every round's ClientApp start-up cheap.
"""

from __future__ import annotations

import grpc
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from protos.tessera.v1 import agent_pb2
from protos.wire import MAX_MESSAGE_BYTES, pack_payload, unpack_payload

AGENT_TIMEOUT_S = 1800.0
_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

app = ClientApp()


def _failure(code: str, reason: str) -> bytes:
    return agent_pb2.TaskReply(ok=False, error_code=code, reason=reason).SerializeToString()


def forward(request: bytes, address: str) -> bytes:
    """Send a serialised TaskRequest to the site agent and return the serialised reply."""
    with grpc.insecure_channel(address, options=_OPTIONS) as channel:
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


__all__ = ["app", "forward"]

"""The wire conventions of Tessera's protocol, in one place for both ends.

Every task and reply travels as serialised protobuf bytes inside a Flower message: a
``RecordDict`` with one ``ArrayRecord`` named ``tessera`` holding one ``Array`` named
``payload`` (``dtype="bytes"``). The ClientApp shim and the coordinator both use
:func:`pack_payload` and :func:`unpack_payload`; the message type follows the task kind.
This module is the only one in ``protos`` that imports Flower (the carriage, not the schema).
"""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, RecordDict

from protos.tessera.v1 import agent_pb2

#: Format version of :class:`agent_pb2.UpdateEnvelope` (docs/envelope-format.md).
ENVELOPE_VERSION = 2
#: Largest task or reply accepted on the local gRPC hop and by the agent (bytes).
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
#: Largest study plan a task may carry (bytes), checked before the plan is parsed.
MAX_PLAN_BYTES = 256 * 1024
#: Bytes of a task nonce.
NONCE_BYTES = 16
#: Record and array that carry the serialised TaskRequest / TaskReply.
PAYLOAD_RECORD, PAYLOAD_ARRAY = "tessera", "payload"

#: Metric keys of an importance reply: ``<prefix><feature>`` per feature, plus the row count
#: and the number of shuffles.
IMPORTANCE_AUC_PREFIX, IMPORTANCE_LOG_LOSS_PREFIX = "importance_auc:", "importance_log_loss:"
IMPORTANCE_N, IMPORTANCE_REPEATS = "importance_n", "importance_repeats"
#: The answering site's epsilon for the study so far, in an importance reply (DP only).
IMPORTANCE_EPSILON = "epsilon_study"

#: Metric keys of a drift reply: ``<prefix><feature index>:<bin>`` -> noisy count.
DRIFT_PREFIX = "drift:"

#: Wire names of task and envelope kinds (records, events and logs use these words).
TASK_NAMES: dict[int, str] = {
    agent_pb2.TASK_HELLO: "hello",
    agent_pb2.TASK_STATS: "stats",
    agent_pb2.TASK_TRAIN: "train",
    agent_pb2.TASK_EVALUATE: "evaluate",
    agent_pb2.TASK_OPEN_COUNTS: "open_counts",
    agent_pb2.TASK_EVALUATE_OWN: "evaluate_own",
    agent_pb2.TASK_IMPORTANCE: "importance",
    agent_pb2.TASK_RELEASE: "release",
    agent_pb2.TASK_DRIFT: "drift",
    agent_pb2.TASK_ATTEST: "attest",
}
ENVELOPE_NAMES: dict[int, str] = {
    agent_pb2.ENVELOPE_WEIGHTS: "weights",
    agent_pb2.ENVELOPE_STATS: "stats",
    agent_pb2.ENVELOPE_EVAL: "eval",
}


def task_name(kind: int) -> str:
    """The word for a task kind (``"unknown"`` for a value outside the enum)."""
    return TASK_NAMES.get(int(kind), "unknown")


def envelope_name(kind: int) -> str:
    """The word for an envelope kind (``"unknown"`` for a value outside the enum)."""
    return ENVELOPE_NAMES.get(int(kind), "unknown")


def message_type(kind: int) -> str:
    """The Flower message type that carries a task kind."""
    if kind == agent_pb2.TASK_TRAIN:
        return "train"
    if kind == agent_pb2.TASK_EVALUATE:
        return "evaluate"
    return "query"


def pack_payload(data: bytes) -> RecordDict:
    """Opaque bytes as Flower content (Flower chunks large arrays itself)."""
    array = Array(dtype="bytes", shape=(len(data),), stype="raw", data=data)
    return RecordDict({PAYLOAD_RECORD: ArrayRecord({PAYLOAD_ARRAY: array})})


def unpack_payload(content: RecordDict) -> bytes:
    """The opaque bytes of Flower content built by :func:`pack_payload`; ValueError if absent
    or larger than :data:`MAX_MESSAGE_BYTES`."""
    record = content.array_records.get(PAYLOAD_RECORD)
    if record is None or PAYLOAD_ARRAY not in record:
        raise ValueError("message carries no Tessera payload")
    data = bytes(record[PAYLOAD_ARRAY].data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError("message is larger than the protocol allows")
    return data

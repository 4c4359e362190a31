"""An in-process federation: the ServerApp's Grid talking straight to in-process site agents.

Same interfaces as the Deployment Engine (the strategy sees Flower Messages, each agent sees
TaskRequests), without processes or sockets: used by tests and benchmarks that exercise
the protocol many times, and as the per-site agent for simulation-scale runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from client_app.agent.site_agent import SiteAgent
from protos.tessera.v1 import agent_pb2
from protos.wire import pack_payload, unpack_payload

#: A hook that may replace a site's serialized reply (tests inject faults with it).
ReplyHook = Callable[[str, agent_pb2.TaskRequest, bytes], bytes]


class LocalGrid(Grid):
    """What a Grid of agents on this machine needs beyond delivery: messages are built as the
    ServerApp builds them; runs and asynchronous push and pull are not used."""

    def set_run(self, run: Run) -> None:  # pragma: no cover - not used in-process
        """Not used in-process."""

    @property
    def run(self) -> Run:  # pragma: no cover
        """Not used in-process."""
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """Build a message for a node."""
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # pragma: no cover
        """Not used in-process."""
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # pragma: no cover
        """Not used in-process."""
        raise NotImplementedError


class InProcessGrid(LocalGrid):
    """A Grid whose nodes are in-process site agents."""

    def __init__(self, agents: Iterable[SiteAgent], *, reply_hook: ReplyHook | None = None):
        self.nodes = {1000 + i: agent for i, agent in enumerate(agents)}
        self.reply_hook = reply_hook
        self.sent: list[tuple[int, str]] = []
        # Messages take their sender identity from the process, as in a ServerApp process.
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1

    def get_node_ids(self) -> Iterable[int]:
        """The agents' node ids."""
        return list(self.nodes)

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Deliver each message to its agent and collect the replies."""
        replies = []
        for message in messages:
            node = int(message.metadata.dst_node_id)
            agent = self.nodes[node]
            request = agent_pb2.TaskRequest.FromString(unpack_payload(message.content))
            self.sent.append((node, request.kind))
            data = agent.handle(request).SerializeToString()
            if self.reply_hook is not None:
                data = self.reply_hook(agent.site.name, request, data)
            reply = Message(pack_payload(data), reply_to=message)
            replies.append(reply)
        return replies

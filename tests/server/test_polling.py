"""The coordinator's grid pulls replies promptly and still honours the step timeout."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from server.polling import PromptGrid


class SlowNodes(Grid):
    """A grid whose node ``n`` replies ``delays[n]`` seconds after a message is pushed."""

    def __init__(self, delays: dict[int, float]) -> None:
        # Messages take their sender identity from the process, as in a ServerApp process.
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
        self.delays = delays
        self.pushed: dict[str, tuple[Message, float]] = {}
        self.pulls = 0

    def set_run(self, run: Run) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Run:
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.delays)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for number, message in enumerate(messages):
            ids.append(f"m{number}")
            message.metadata.__dict__["_message_id"] = ids[-1]  # as the SuperLink assigns it
            self.pushed[ids[-1]] = (message, time.monotonic())
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        out = []
        for mid in message_ids:
            message, at = self.pushed[mid]
            if time.monotonic() - at >= self.delays[message.metadata.dst_node_id]:
                out.append(Message(RecordDict({"c": ConfigRecord({"ok": 1})}),
                                   reply_to=message))
        return out

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        raise AssertionError("the wrapped grid's own 3 s polling must not be used")


def _messages(grid: Grid, nodes: Iterable[int]) -> list[Message]:
    return [grid.create_message(RecordDict({"c": ConfigRecord({"x": 1})}), "train", node, "g")
            for node in nodes]


def test_replies_are_collected_soon_after_they_arrive() -> None:
    inner = SlowNodes({1: 0.1, 2: 0.4})
    grid = PromptGrid(inner, interval=0.05)
    started = time.monotonic()
    replies = list(grid.send_and_receive(_messages(grid, [1, 2]), timeout=10))
    assert len(replies) == 2
    assert time.monotonic() - started < 1.5


def test_a_node_that_does_not_answer_is_left_out_at_the_timeout() -> None:
    inner = SlowNodes({1: 0.0, 2: 60.0})
    grid = PromptGrid(inner, interval=0.05)
    started = time.monotonic()
    replies = list(grid.send_and_receive(_messages(grid, [1, 2]), timeout=0.5))
    elapsed = time.monotonic() - started
    assert [r.metadata.reply_to_message_id for r in replies] == ["m0"]
    assert 0.5 <= elapsed < 2.0
    assert inner.pulls >= 3


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        PromptGrid(SlowNodes({}), interval=0)

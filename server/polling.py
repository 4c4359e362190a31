"""Waiting for the sites' replies without Flower's fixed three-second pause.

Flower's deployment grid pushes a step's messages and then pulls the replies every 3 s, so
each request-reply step of a round (training, evaluation, opening the summed counts) ends on
a 3 s tick after the last reply. :class:`PromptGrid` wraps that grid and pulls at a short
interval instead (``interval``, 0.25 s by default: one small request to the SuperLink on the
coordinator's own host), with the same timeout semantics; every other call is the wrapped
grid's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

#: Seconds between two pulls of replies.
PULL_INTERVAL = 0.25


class PromptGrid(Grid):
    """A Flower grid that pulls replies every ``interval`` seconds."""

    def __init__(self, inner: Grid, *, interval: float = PULL_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError("interval must be positive")
        self.inner = inner
        self.interval = interval

    def set_run(self, run: Run) -> None:
        """The wrapped grid's."""
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's."""
        return self.inner.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """The wrapped grid's."""
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """The wrapped grid's."""
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """The wrapped grid's."""
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The wrapped grid's."""
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages`` and pull replies until each has one or ``timeout`` passes
        (``None``: wait until every reply is in)."""
        waiting = set(self.push_messages(messages))
        end = time.monotonic() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while waiting:
            got = list(self.pull_messages(waiting))
            replies.extend(got)
            waiting.difference_update(m.metadata.reply_to_message_id for m in got)
            if not waiting or (timeout is not None and time.monotonic() >= end):
                break
            time.sleep(self.interval)
        return replies

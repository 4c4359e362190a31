"""Simulated sites spread over worker processes: the in-process grid, on several cores.

A simulated round is each site's own work (admission, DP-SGD, accounting, CKKS, store and
audit writes), and in one process it runs one site after another on one core. With
``workers = w`` this module starts ``w`` worker processes; each unlocks its share of the
site folders (every site belongs to exactly one worker, so its store, ledger and audit log
have one writer, as at a real site) and runs one :class:`~client_app.agent.site_agent.
SiteAgent` per site. :class:`WorkerGrid` is the coordinator's Grid: it hands every worker its
sites' serialized TaskRequests of a send at once and collects the serialized replies, so
the workers run in parallel while each site still takes its tasks one at a time, in order.
Only the transport differs from :class:`tessera.inprocess.InProcessGrid`; the messages are
the same bytes. Workers are spawned (a fresh interpreter each), so a script that starts them
must guard its entry point (``if __name__ == "__main__":``); the ``tessera`` command does.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType

from flwr.app import Message
from flwr.supercore.task_identity import TaskIdentity

from common.errors import ErrorCode, TesseraError
from common.workdir import SiteDir
from protos.tessera.v1 import agent_pb2
from protos.wire import pack_payload, unpack_payload
from tessera.inprocess import LocalGrid


def _serve(sites: list[tuple[str, str]], passphrase: str, conn: Connection) -> None:
    """A worker: unlock ``sites`` (root, name), run an agent for each, answer batches of
    (site index, request bytes) with the replies' bytes until told to stop (None)."""
    from client_app.agent.site_agent import SiteAgent
    from client_app.custody.vault import unlock_vault

    agents = [SiteAgent(unlock_vault(SiteDir(Path(root), name), passphrase))
              for root, name in sites]
    conn.send("ready")
    while (batch := conn.recv()) is not None:
        conn.send([agents[i].handle(agent_pb2.TaskRequest.FromString(data))
                   .SerializeToString() for i, data in batch])
    conn.close()


class WorkerGrid(LocalGrid):
    """A Grid whose nodes are site agents in ``workers`` worker processes."""

    def __init__(self, sites: Sequence[SiteDir], *, passphrase: str, workers: int) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "workers: must be an integer >= 1")
        workers = min(workers, len(sites))
        spawn = multiprocessing.get_context("spawn")  # no forked copies of library threads
        # Node 1000 + i is site i, as in the in-process grid; sites are dealt round-robin.
        self._where = {1000 + i: (i % workers, i // workers) for i in range(len(sites))}
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self.sent: list[tuple[int, str]] = []
        try:
            for w in range(workers):
                mine = [(str(s.root), s.name) for s in sites[w::workers]]
                parent, child = spawn.Pipe()
                proc = spawn.Process(target=_serve, args=(mine, passphrase, child),
                                     name=f"simulated-sites-{w}", daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            for conn in self._conns:
                if self._receive(conn) != "ready":
                    raise TesseraError(ErrorCode.PROCESS_FAILED, "a worker did not start")
        except BaseException:
            self.close()
            raise
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1

    def __enter__(self) -> WorkerGrid:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (each finishes the batch it has, then exits)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._conns, self._procs = [], []

    @staticmethod
    def _receive(conn: Connection) -> object:
        try:
            return conn.recv()
        except (EOFError, OSError):
            raise TesseraError(ErrorCode.PROCESS_FAILED,
                               "a simulation worker process ended unexpectedly") from None

    def get_node_ids(self) -> Iterable[int]:
        """The agents' node ids."""
        return list(self._where)

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Deliver the messages to their workers at once; the replies, in message order."""
        batches: list[list[tuple[int, bytes]]] = [[] for _ in self._conns]
        slots: list[tuple[int, int]] = []  # (worker, position in its batch) per message
        sent = list(messages)
        for message in sent:
            worker, index = self._where[int(message.metadata.dst_node_id)]
            data = unpack_payload(message.content)
            self.sent.append((int(message.metadata.dst_node_id),
                              agent_pb2.TaskRequest.FromString(data).kind))
            slots.append((worker, len(batches[worker])))
            batches[worker].append((index, data))
        for conn, batch in zip(self._conns, batches, strict=True):
            if batch:
                conn.send(batch)
        answers: list[list[bytes]] = []
        for conn, batch in zip(self._conns, batches, strict=True):
            got = self._receive(conn) if batch else []
            assert isinstance(got, list)
            answers.append(got)
        return [Message(pack_payload(answers[w][pos]), reply_to=message)
                for message, (w, pos) in zip(sent, slots, strict=True)]

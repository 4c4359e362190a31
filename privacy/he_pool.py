"""Worker processes that share the parsing of a streamed encrypted sum (the parent's side).

This module owns the processes :func:`privacy.he_sum.add_encrypted` starts for long vectors:
their start, the hand-off of contributions and the collection of their partial sums. Most of
a sum's time is spent under Python's global interpreter lock (TenSEAL holds it while it parses
a ciphertext; the compact form's checks, unpacking and seed expansion are many short calls),
so only processes can share that work.

Each worker is a fresh interpreter (``python -c``, never a copy or a re-run of the caller's
program) running :func:`privacy.he_sum.serve_worker`. It receives the encryption parameters
only, never a key. Contributions travel through a shared-memory file of two slots per worker:
the parent copies a contribution's chunks into a free slot (a Linux memory file; elsewhere no
worker starts and the caller adds alone) and sends a short message over a pipe; the worker
adds them into its own running sum and frees the slot. Control messages are small tuples
over :class:`multiprocessing.connection.Connection` (pickled between this process and its own
child):

- to the worker: ``("setup", parameters, sizes, slot_bytes)``,
  ``("item", index, slot, lengths)``, ``("stop",)``;
- from the worker: ``("free", slot)``, ``("refused", index, code, message)`` (at once, then
  it frees slots without adding), ``("sum", chunks or None)`` after ``stop``.

A worker that has not started when a contribution arrives is simply not given it, so a short
stream is summed by the caller alone; a worker that dies makes the sum fail
(``PROCESS_FAILED``), never return a partial result.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from common.errors import ErrorCode, TesseraError

#: Contribution slots per worker: one being added, one being filled.
SLOTS = 2
#: Seconds a requested worker may take to start or to answer; the polling step.
_PATIENCE_SECONDS = 120.0
_POLL_SECONDS = 0.2
_ENTRY = ("import sys; from privacy.he_sum import serve_worker; "
          "serve_worker(*(int(fd) for fd in sys.argv[1:4]))")


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    to_worker: Connection
    from_worker: Connection
    memory: mmap.mmap
    memory_fd: int
    free: list[int] = field(default_factory=list)
    started: bool = False
    gone: bool = False  # ended before it was given anything: the caller adds without it
    given: int = 0


class WorkerPool:
    """``count`` worker processes for one sum of vectors with ``sizes`` values per chunk."""

    def __init__(self, parameters: bytes, sizes: Sequence[int], *, count: int,
                 slot_bytes: int) -> None:
        self._setup = ("setup", parameters, list(sizes), slot_bytes)
        self._count, self._slot_bytes = count, slot_bytes
        self._workers: list[_Worker] = []
        self._next = 0
        self._unstarted = 0
        self.refusals: list[tuple[int, TesseraError]] = []

    def __enter__(self) -> WorkerPool:
        try:
            for _ in range(self._count):
                try:
                    worker = self._start()
                except OSError:  # no process to be had: the caller adds without it
                    self._unstarted += 1
                    continue
                self._workers.append(worker)
                try:
                    _send(worker, self._setup)
                except TesseraError:
                    worker.gone = True
                    self._unstarted += 1
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _start(self) -> _Worker:
        if not hasattr(os, "memfd_create"):
            raise OSError("shared memory files (memfd) are Linux-only")
        size = SLOTS * self._slot_bytes
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])  # the folder holding privacy/
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        opened: list[int] = []
        memory: mmap.mmap | None = None
        try:
            opened.append(memory_fd := os.memfd_create("tessera-he-sum", 0))
            os.ftruncate(memory_fd, size)
            memory = mmap.mmap(memory_fd, size)
            opened.extend(down := os.pipe())
            opened.extend(up := os.pipe())
            (down_read, down_write), (up_read, up_write) = down, up
            process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(down_read), str(up_write), str(memory_fd)],
                pass_fds=(down_read, up_write, memory_fd), env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        except BaseException:
            if memory is not None:
                memory.close()
            for fd in opened:
                os.close(fd)
            raise
        os.close(down_read)
        os.close(up_write)
        return _Worker(process, Connection(down_write, readable=False),
                       Connection(up_read, writable=False), memory, memory_fd)

    def wait_started(self) -> None:
        """Block until every worker has started (``PROCESS_FAILED`` if one cannot)."""
        if self._unstarted:
            raise TesseraError(ErrorCode.PROCESS_FAILED,
                               "workers: a summing worker process could not be started")
        for worker in self._workers:
            deadline = time.monotonic() + _PATIENCE_SECONDS
            while not worker.started:
                self._drain(worker, timeout=_POLL_SECONDS)
                if not worker.started and (worker.gone or time.monotonic() > deadline):
                    raise TesseraError(ErrorCode.PROCESS_FAILED,
                                       "workers: a summing worker process did not start")

    def refused(self) -> bool:
        """Whether a worker has refused a contribution (read without waiting)."""
        for worker in self._workers:
            self._drain(worker, timeout=0)
        return bool(self.refusals)

    def offer(self, index: int, chunks: Sequence[bytes]) -> bool:
        """Hand contribution ``index`` to a started worker with a free slot, if any."""
        lengths = [len(data) for data in chunks]
        if sum(lengths) > self._slot_bytes:
            return False
        for step in range(len(self._workers)):
            worker = self._workers[(self._next + step) % len(self._workers)]
            self._drain(worker, timeout=0)
            if worker.gone or not worker.free:
                continue
            slot = worker.free.pop()
            offset = slot * self._slot_bytes
            for data, length in zip(chunks, lengths, strict=True):
                worker.memory[offset:offset + length] = data
                offset += length
            _send(worker, ("item", index, slot, lengths))
            worker.given += 1
            self._next = (self._next + step + 1) % len(self._workers)
            return True
        return False

    def collect(self) -> list[list[bytes]]:
        """Every worker's partial sum once it has added all it was given; raises the refusal
        of the earliest contribution a worker refused."""
        partials: list[list[bytes]] = []
        for worker in self._workers:
            if worker.given == 0:
                continue
            _send(worker, ("stop",))
            worker.given = 0
            deadline = time.monotonic() + _PATIENCE_SECONDS
            while True:
                message = self._receive(worker, deadline)
                if message[0] == "sum":
                    if message[1] is not None:
                        partials.append(message[1])
                    break
                self._handle(worker, message)
        if self.refusals:
            raise min(self.refusals, key=lambda refusal: refusal[0])[1]
        return partials

    def close(self) -> None:
        """Stop every worker and release its pipes and shared memory."""
        for worker in self._workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()
            worker.to_worker.close()
            worker.from_worker.close()
            worker.memory.close()
            os.close(worker.memory_fd)
        self._workers = []

    def _drain(self, worker: _Worker, *, timeout: float) -> None:
        try:
            while not worker.gone and worker.from_worker.poll(timeout):
                self._handle(worker, self._receive(worker, time.monotonic() + _PATIENCE_SECONDS))
                timeout = 0
        except TesseraError:
            if worker.given:
                raise
            worker.gone = True

    def _receive(self, worker: _Worker, deadline: float) -> tuple[Any, ...]:
        while not worker.from_worker.poll(_POLL_SECONDS):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise TesseraError(ErrorCode.PROCESS_FAILED,
                                   "workers: a summing worker process ended without its sum")
        try:
            message: tuple[Any, ...] = worker.from_worker.recv()
        except (EOFError, OSError):
            raise TesseraError(ErrorCode.PROCESS_FAILED,
                               "workers: a summing worker process ended without its sum"
                               ) from None
        return message

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        if message[0] == "free":
            worker.started = True
            worker.free.append(int(message[1]))
        elif message[0] == "refused":
            _, index, code, text = message
            self.refusals.append((int(index), TesseraError(ErrorCode(code), str(text))))
        else:
            raise TesseraError(ErrorCode.PROCESS_FAILED,
                               f"workers: unexpected message {message[0]!r} from a worker")


def _send(worker: _Worker, message: tuple[Any, ...]) -> None:
    try:
        worker.to_worker.send(message)
    except OSError:
        raise TesseraError(ErrorCode.PROCESS_FAILED,
                           "workers: a summing worker process ended early") from None

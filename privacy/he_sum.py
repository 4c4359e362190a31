"""Streamed element-wise sums of chunked CKKS vectors, in this process or shared with workers.

This module owns :func:`add_encrypted` (re-exported by :mod:`privacy.ckks`), the sum the
coordinator computes over the sites' encrypted updates and a site over the contributions it
verifies, and :func:`serve_worker`, the loop of the worker processes that share it
(:mod:`privacy.he_pool`). Contributions are folded into a
:class:`privacy.he_running.RunningSum`: the compact uploads of sites as numpy arrays (their
seeds expanded in bulk, every check of the compact form), anything else parsed and added by
the library.

For vectors of at least :data:`PARALLEL_MIN_CHUNKS` chunks, worker processes (one per spare
CPU) take whole contributions whenever they have a free slot, this process adds the others,
and their partial sums are added at the end. Sums modulo the coefficient primes are exact, so
the result is the same ciphertext whoever added what. Memory stays flat in the number of
contributors: the running sums, the contribution in hand and each worker's two slots.

A refused contribution is reported as a sequential sum would: the first refused one in stream
order, named by its index and chunk (``vectors[3] chunk 7: ...``).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing.connection import Connection

from common.errors import ErrorCode, TesseraError
from privacy.he_parse import load_context, parameters_only, shape_of
from privacy.he_pool import SLOTS, WorkerPool
from privacy.he_running import RunningSum, check_layout

#: Chunks per vector from which a sum also runs in worker processes (about 260,000 values
#: at ``N = 4096``): below it a sum is over before a worker has started.
PARALLEL_MIN_CHUNKS = 128
#: Most worker processes chosen automatically (one per spare CPU up to this).
MAX_AUTO_WORKERS = 7
#: Most worker processes a caller may ask for.
MAX_WORKERS = 32


class _End:
    """Marks the end of the stream (``None`` is a contribution, if a malformed one)."""


_END = _End()


def add_encrypted(evaluation_context: bytes, vectors: Iterable[Sequence[bytes]], *,
                  workers: int | None = None) -> list[bytes]:
    """Element-wise sum of chunked encrypted vectors that all have the same layout.

    Streaming: ``vectors`` may be any iterable (a generator reading contributions one at a
    time); memory stays flat in the number of contributors. ``workers``: processes to share
    the parsing with (``0``: none; ``None``: one per spare CPU when the vectors have at least
    :data:`PARALLEL_MIN_CHUNKS` chunks, taking contributions once started). Requested
    workers are waited for after ``vectors[0]``.
    """
    context = load_context(evaluation_context, name="evaluation_context")
    if isinstance(vectors, bytes | str):
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT, "vectors: no encrypted vectors to add")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or not 0 <= workers <= MAX_WORKERS):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"workers: must be an integer from 0 to {MAX_WORKERS}, got {workers!r}")
    running = RunningSum(context, shape_of(context))
    stream = iter(vectors)
    first = next(stream, _END)
    if first is _END:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT, "vectors: no encrypted vectors to add")
    assert not isinstance(first, _End)
    running.fold(first, 0)
    assert running.sizes is not None
    sizes = running.sizes
    slot_bytes = sum(len(data) for data in first) * 5 // 4 + (1 << 16)
    del first  # only the running sum stays
    count = auto_workers(len(sizes)) if workers is None else workers
    if count == 0:
        for index, vector in enumerate(stream, start=1):
            running.fold(vector, index)
        return running.result()
    with WorkerPool(parameters_only(context), sizes, count=count,
                    slot_bytes=slot_bytes) as pool:
        if workers is not None:
            pool.wait_started()
        try:
            _fold_shared(running, stream, pool)
        except TesseraError:
            pool.collect()  # a worker's refusal of an earlier contribution comes first
            raise
        for partial in pool.collect():
            running.fold(partial, -1)
    return running.result()


def _fold_shared(running: RunningSum, stream: Iterator[Sequence[bytes]],
                 pool: WorkerPool) -> None:
    for index, vector in enumerate(stream, start=1):
        if pool.refused():
            return
        check_layout(vector, index, running.sizes)
        if not (all(isinstance(data, bytes) and data for data in vector)
                and pool.offer(index, vector)):
            running.fold(vector, index)


def auto_workers(chunks: int) -> int:
    """Worker processes :func:`add_encrypted` starts by itself for ``chunks``-chunk vectors."""
    if (chunks < PARALLEL_MIN_CHUNKS or getattr(sys, "frozen", False)
            or not hasattr(os, "memfd_create")):
        return 0  # a frozen bundle's executable is not a plain interpreter; memfd is Linux's
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (platforms without CPU affinity)
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cpus - 1))


def serve_worker(inbox_fd: int, outbox_fd: int, memory_fd: int) -> None:
    """A worker process of :class:`privacy.he_pool.WorkerPool`: add every contribution it is
    handed into its own running sum, then send that sum."""
    import mmap

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its workers itself
    inbox = Connection(inbox_fd, writable=False)
    outbox = Connection(outbox_fd, readable=False)
    _, parameters, sizes, slot_bytes = inbox.recv()
    memory = mmap.mmap(memory_fd, SLOTS * slot_bytes)
    context = load_context(parameters, name="evaluation_context")
    running = RunningSum(context, shape_of(context))
    running.sizes = list(sizes)
    added = False
    for slot in range(SLOTS):
        outbox.send(("free", slot))
    refused = False
    while (message := inbox.recv())[0] == "item":
        _, index, slot, lengths = message
        if not refused:
            offset, chunks = slot * slot_bytes, []
            for length in lengths:
                chunks.append(memory[offset:offset + length])
                offset += length
            try:
                running.fold(chunks, index)
                added = True
            except TesseraError as exc:
                refused = True
                outbox.send(("refused", index, exc.code.value, exc.message))
        outbox.send(("free", slot))
    outbox.send(("sum", None if refused or not added else running.result()))

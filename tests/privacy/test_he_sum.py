"""Behaviour of the streamed encrypted sum when worker processes share it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import privacy.he_pool as he_pool
import privacy.he_sum as he_sum
from common.errors import ErrorCode, TesseraError
from privacy.ckks import CkksKeys, CkksParams, add_encrypted, decrypt_vector, encrypt_vector
from privacy.ckks import generate_keys as make_keys

SITES, LENGTH = 8, 9_000  # three chunks of at most 4,096 values, the last one partial


@pytest.fixture(scope="module")
def keys() -> CkksKeys:
    return make_keys(CkksParams())


@pytest.fixture(scope="module")
def uploads(keys: CkksKeys) -> tuple[np.ndarray, list[list[bytes]]]:
    updates = np.random.default_rng(5).normal(0.0, 100.0, size=(SITES, LENGTH))
    return updates, [encrypt_vector(keys.secret_context, u) for u in updates]


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Indexes of the contributions a worker took."""
    taken: list[int] = []
    offer = he_pool.WorkerPool.offer

    def spy(pool: he_pool.WorkerPool, index: int, chunks: list[bytes]) -> bool:
        took = offer(pool, index, chunks)
        if took:
            taken.append(index)
        return took

    monkeypatch.setattr(he_pool.WorkerPool, "offer", spy)
    return taken


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_same_ciphertexts_as_one_process(
    keys: CkksKeys, uploads: tuple[np.ndarray, list[list[bytes]]], handed: list[int],
    workers: int,
) -> None:
    updates, sealed = uploads
    alone = add_encrypted(keys.evaluation_context, sealed, workers=0)
    shared = add_encrypted(keys.evaluation_context, iter(sealed), workers=workers)

    assert handed, "no contribution went to a worker"
    assert shared == alone  # sums modulo the primes are exact, whoever adds what
    total = decrypt_vector(keys.secret_context, shared, length=LENGTH)
    np.testing.assert_allclose(total, updates.sum(axis=0), atol=1e-6)


def test_a_contribution_a_worker_refuses_is_named_as_in_one_process(
    keys: CkksKeys, uploads: tuple[np.ndarray, list[list[bytes]]], handed: list[int],
) -> None:
    _, sealed = uploads
    broken = [b"not a ciphertext", *sealed[1][1:]]
    with pytest.raises(TesseraError) as alone:
        add_encrypted(keys.evaluation_context, [sealed[0], broken, *sealed[2:]], workers=0)
    with pytest.raises(TesseraError) as shared:
        add_encrypted(keys.evaluation_context, [sealed[0], broken, *sealed[2:]], workers=1)

    assert handed[0] == 1  # the first contribution after vectors[0] goes to the started worker
    assert shared.value.code is alone.value.code is ErrorCode.BAD_CIPHERTEXT
    assert shared.value.message == alone.value.message
    assert shared.value.message.startswith("vectors[1] chunk 0: not a CKKS ciphertext")


def test_the_earliest_of_several_refused_contributions_is_reported(
    keys: CkksKeys, uploads: tuple[np.ndarray, list[list[bytes]]],
) -> None:
    _, sealed = uploads
    other = make_keys(CkksParams(global_scale_bits=30))
    coarse = encrypt_vector(other.secret_context, np.zeros(LENGTH))
    stream = [*sealed[:3], coarse, sealed[4], [b"x", *sealed[5][1:]], *sealed[6:]]

    for workers in (0, 1, 2):
        with pytest.raises(TesseraError) as info:
            add_encrypted(keys.evaluation_context, stream, workers=workers)
        assert info.value.message.startswith("vectors[3] chunk 0: is not at these parameters'")


def test_a_contribution_that_is_not_a_list_of_chunks_is_refused(
    keys: CkksKeys, uploads: tuple[np.ndarray, list[list[bytes]]],
) -> None:
    for stream in ([None], [uploads[1][0], 7]):
        with pytest.raises(TesseraError) as info:
            add_encrypted(keys.evaluation_context, stream)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.BAD_CIPHERTEXT
        assert "must be a non-empty list of chunks" in info.value.message


def test_a_worker_that_dies_fails_the_sum_instead_of_dropping_its_share(
    keys: CkksKeys, uploads: tuple[np.ndarray, list[list[bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, sealed = uploads
    pools: list[he_pool.WorkerPool] = []
    enter = he_pool.WorkerPool.__enter__

    def keep(pool: he_pool.WorkerPool) -> he_pool.WorkerPool:
        pools.append(pool)
        return enter(pool)

    monkeypatch.setattr(he_pool.WorkerPool, "__enter__", keep)

    def arriving() -> Iterator[list[bytes]]:
        yield from sealed[:3]
        for worker in pools[0]._workers:  # one or two contributions are with the worker now
            worker.process.kill()
            worker.process.wait()
        yield from sealed[3:]

    with pytest.raises(TesseraError) as info:
        add_encrypted(keys.evaluation_context, arriving(), workers=1)
    assert info.value.code is ErrorCode.PROCESS_FAILED


def test_short_vectors_start_no_worker_and_long_ones_one_per_spare_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(he_sum.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert he_sum.auto_workers(he_sum.PARALLEL_MIN_CHUNKS - 1) == 0
    assert he_sum.auto_workers(he_sum.PARALLEL_MIN_CHUNKS) == 1
    monkeypatch.setattr(he_sum.os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert he_sum.auto_workers(10 * he_sum.PARALLEL_MIN_CHUNKS) == 0
    monkeypatch.setattr(he_sum.os, "sched_getaffinity", lambda _: set(range(64)), raising=False)
    assert he_sum.auto_workers(he_sum.PARALLEL_MIN_CHUNKS) == he_sum.MAX_AUTO_WORKERS
    monkeypatch.setattr(he_sum.sys, "frozen", True, raising=False)
    assert he_sum.auto_workers(he_sum.PARALLEL_MIN_CHUNKS) == 0


@pytest.mark.parametrize("workers", [-1, True, 1.5, he_sum.MAX_WORKERS + 1])
def test_a_bad_worker_count_is_refused(
    keys: CkksKeys, uploads: tuple[np.ndarray, list[list[bytes]]], workers: object,
) -> None:
    _, sealed = uploads
    with pytest.raises(TesseraError) as info:
        add_encrypted(keys.evaluation_context, sealed, workers=workers)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith("workers")


def test_without_a_process_to_start_the_sum_runs_alone_unless_workers_were_asked_for(
    keys: CkksKeys, uploads: tuple[np.ndarray, list[list[bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, sealed = uploads
    alone = add_encrypted(keys.evaluation_context, sealed, workers=0)

    def no_process(*args: object, **kwargs: object) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(he_pool.subprocess, "Popen", no_process)
    monkeypatch.setattr(he_sum, "auto_workers", lambda chunks: 2)
    assert add_encrypted(keys.evaluation_context, sealed) == alone
    with pytest.raises(TesseraError) as info:
        add_encrypted(keys.evaluation_context, sealed, workers=1)
    assert info.value.code is ErrorCode.PROCESS_FAILED

"""The running sum of a stream of chunked CKKS vectors, as arrays or as library vectors.

This module owns :class:`RunningSum`, what :func:`privacy.he_sum.add_encrypted` (and each of
its worker processes) folds contributions into. A contribution whose chunks are all in the
compact form sites upload (:mod:`privacy.he_compact`) is added as numpy arrays: its headers
are checked chunk by chunk, its first polynomials unpacked and checked against the primes,
its second polynomials expanded from their seeds, and both added modulo each prime, a block
of chunks at a time so memory stays flat. Any other chunk (a sum, a worker's partial sum, a
TenSEAL vector) is parsed with every check of :func:`privacy.he_parse.load_chunk` and added in
place by the library. Addition modulo the primes is exact, so the result is the same
ciphertext, and the same bytes, whichever way and in whichever order its parts were added.

A refused contribution is named by its index and chunk (``vectors[3] chunk 7: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tenseal as ts
from tenseal import _ts_cpp as _cpp

from common.errors import ErrorCode, TesseraError
from privacy.he_compact import (
    HEADER_BYTES,
    SEED_BYTES,
    check_reduced,
    expand_many,
    is_compact,
    padded_bodies,
    read_header,
    unpack,
)
from privacy.he_layout import Layout, layout_of, seal_vector
from privacy.he_parse import ChunkShape, load_chunk

#: Chunks unpacked and expanded at once (about 2 MB of temporaries at ``N = 4096``).
BLOCK_CHUNKS = 32


class RunningSum:
    """Element-wise sum of chunked encrypted vectors with the layout of the first one."""

    def __init__(self, context: ts.Context, shape: ChunkShape) -> None:
        self._context, self._shape = context, shape
        self._layout: Layout | None = None
        self.sizes: list[int] | None = None
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._vectors: list[_cpp.CKKSVector | None] | None = None
        self._expanded: np.ndarray | None = None
        self._unreduced = 0  # contributions added to the arrays since they were last reduced

    def fold(self, vector: Sequence[bytes], index: int) -> None:
        """Add contribution ``index`` (a list of chunks, the layout of ``vectors[0]``)."""
        check_layout(vector, index, self.sizes)
        if all(is_compact(data) for data in vector):
            self._fold_arrays(vector, index)
        else:
            self._fold_vectors(vector, index)

    def result(self) -> list[bytes]:
        """The sum's chunks, each an ordinary TenSEAL vector serialisation."""
        assert self.sizes is not None, "nothing was added"
        out: list[bytes] = []
        self._reduce()
        self._expanded = None
        for chunk, size in enumerate(self.sizes):
            total = None if self._vectors is None else self._vectors[chunk]
            if self._arrays is not None:
                assert self._layout is not None
                first, second = self._arrays
                vector = _cpp.CKKSVector(self._context.data, seal_vector(
                    size, first[chunk], second[chunk], self._layout))
                if total is not None:
                    vector.add_(total)
                total = vector
            assert total is not None
            out.append(bytes(total.serialize()))
        return out

    def _fold_arrays(self, vector: Sequence[bytes], index: int) -> None:
        layout = self._layout = self._layout or layout_of(self._context)
        sizes = [read_header(data, layout, where=f"vectors[{index}] chunk {chunk}")[0]
                 for chunk, data in enumerate(vector)]
        self._check_sizes(sizes, index)
        if self._arrays is None:
            shape = (len(vector), len(layout.moduli), layout.degree)
            self._arrays = (np.zeros(shape, dtype=np.uint64), np.zeros(shape, dtype=np.uint64))
        # Coefficients stay below (additions + 1) x q without reduction: reduce only when one
        # more contribution could pass 2^64.
        if self._unreduced + 2 > (2**64 - 1) // max(layout.moduli):
            self._reduce()
        first_sum, second_sum = self._arrays
        for start in range(0, len(vector), BLOCK_CHUNKS):
            block = vector[start:start + BLOCK_CHUNKS]
            scratch = self._scratch(layout, len(block))
            first_sum[start:start + len(block)] += _unpack_block(block, layout, index, start,
                                                                 scratch)
            expand_many([data[HEADER_BYTES - SEED_BYTES:HEADER_BYTES] for data in block],
                        layout, scratch)
            second_sum[start:start + len(block)] += scratch[:len(block)]
        self._unreduced += 1

    def _scratch(self, layout: Layout, count: int) -> np.ndarray:
        if self._expanded is None or self._expanded.shape[0] < count:
            self._expanded = np.empty((count, len(layout.moduli), layout.degree),
                                      dtype=np.uint64)
        return self._expanded

    def _reduce(self) -> None:
        if self._arrays is not None and self._unreduced:
            assert self._layout is not None
            for total in self._arrays:
                np.remainder(total, self._layout.column_moduli, out=total)
        self._unreduced = 0

    def _fold_vectors(self, vector: Sequence[bytes], index: int) -> None:
        if self._vectors is None:
            self._vectors = [None] * len(vector)
        sizes: list[int] = []
        for chunk, data in enumerate(vector):
            where = f"vectors[{index}] chunk {chunk}"
            other = load_chunk(self._context, data, self._shape, where=where)
            size = int(other.size())
            if self.sizes is not None and size != self.sizes[chunk]:
                raise TesseraError(
                    ErrorCode.BAD_CIPHERTEXT,
                    f"{where}: holds {size} values, vectors[0] holds {self.sizes[chunk]}",
                )
            sizes.append(size)
            total = self._vectors[chunk]
            if total is None:
                self._vectors[chunk] = other
                continue
            try:
                total.add_(other)
            except (ValueError, RuntimeError) as exc:
                raise TesseraError(
                    ErrorCode.BAD_CIPHERTEXT,
                    f"{where}: cannot be added to vectors[0] chunk {chunk} ({exc})",
                ) from None
        if self.sizes is None:
            self.sizes = sizes

    def _check_sizes(self, sizes: list[int], index: int) -> None:
        if self.sizes is None:
            self.sizes = sizes
            return
        for chunk, (size, expected) in enumerate(zip(sizes, self.sizes, strict=True)):
            if size != expected:
                raise TesseraError(
                    ErrorCode.BAD_CIPHERTEXT,
                    f"vectors[{index}] chunk {chunk}: holds {size} values, "
                    f"vectors[0] holds {expected}",
                )


def _unpack_block(block: Sequence[bytes], layout: Layout, index: int, start: int,
                  scratch: np.ndarray) -> np.ndarray:
    first = unpack(padded_bodies(block, layout), layout, scratch)
    if not bool((first < layout.column_moduli).all()):
        for offset, polys in enumerate(first):
            check_reduced(polys, layout, where=f"vectors[{index}] chunk {start + offset}")
    return first


def check_layout(vector: Sequence[bytes], index: int, sizes: list[int] | None) -> None:
    """Refuse a contribution that is not a non-empty list of ``len(sizes)`` chunks."""
    if isinstance(vector, bytes | str) or not hasattr(vector, "__len__") or len(vector) == 0:
        raise TesseraError(
            ErrorCode.BAD_CIPHERTEXT, f"vectors[{index}]: must be a non-empty list of chunks"
        )
    if sizes is not None and len(vector) != len(sizes):
        raise TesseraError(
            ErrorCode.BAD_CIPHERTEXT,
            f"vectors[{index}]: has {len(vector)} chunks, vectors[0] has {len(sizes)}",
        )

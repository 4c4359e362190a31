"""Parsing CKKS contexts and ciphertexts from bytes, with every check the codec relies on.

This module owns the untrusted-bytes edge of the homomorphic-encryption codec
(:mod:`privacy.ckks`, :mod:`privacy.he_sum`): a serialised TenSEAL context becomes a cached
``tenseal.Context``, and one serialised chunk becomes a library vector only if it is a single
two-part ciphertext of that context, at its data level and scale, holding 1 to ``slots``
values. Vectors are TenSEAL's own C++ objects (``tenseal._ts_cpp.CKKSVector``), without the
Python wrapper: a streamed sum parses hundreds of thousands of them.

Deserialised contexts are cached per bytes object (a few entries), so a process that encrypts
with a secret context keeps that key in memory as long as it keeps the bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import tenseal as ts
from tenseal import _ts_cpp as _cpp

from common.errors import ErrorCode, TesseraError
from privacy.he_compact import is_compact, layout_of, to_seal


@dataclass(frozen=True)
class ChunkShape:
    """What every ciphertext of one context must look like: its slots, level and scale."""

    slots: int
    parms_id: tuple[int, ...]
    scale: float


@functools.lru_cache(maxsize=8)
def _cached_context(data: bytes) -> ts.Context:
    return ts.context_from(data)


def load_context(data: bytes, *, name: str) -> ts.Context:
    """A CKKS context from its serialisation (cached), or a ``CONFIG_INVALID`` naming ``name``."""
    if not isinstance(data, bytes) or not data:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{name}: must be non-empty bytes")
    try:
        context = _cached_context(data)
    except (ValueError, RuntimeError):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"{name}: not a serialized TenSEAL context"
        ) from None
    try:
        context.global_scale  # noqa: B018 (a context without a scale cannot encode)
    except ValueError:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{name}: has no CKKS scale") from None
    return context


def private_context(data: bytes) -> ts.Context:
    """A context that holds a secret key (``KEY_MISSING`` otherwise)."""
    context = load_context(data, name="secret_context")
    if not context.is_private():
        raise TesseraError(ErrorCode.KEY_MISSING, "secret_context: holds no secret key")
    return context


def parameters_only(context: ts.Context) -> bytes:
    """The serialisation of ``context`` without any key: enough to parse and add ciphertexts."""
    return bytes(context.serialize(save_public_key=False, save_secret_key=False,
                                   save_galois_keys=False, save_relin_keys=False))


def slots_of(context: ts.Context) -> int:
    """Values one ciphertext of ``context`` holds."""
    return int(context.seal_context().data.key_context_data().parms().poly_modulus_degree()) // 2


def shape_of(context: ts.Context) -> ChunkShape:
    """The slots, data level and scale every fresh ciphertext of ``context`` has."""
    return ChunkShape(slots=slots_of(context),
                      parms_id=tuple(context.seal_context().data.first_parms_id()),
                      scale=float(context.global_scale))


def load_chunk(context: ts.Context, data: object, shape: ChunkShape, *,
               where: str) -> _cpp.CKKSVector:
    """Parse one ciphertext and check it is a single, fresh-shaped ciphertext of this context.

    Refusals are ``BAD_CIPHERTEXT`` errors whose message starts with ``where``.
    """
    if not isinstance(data, bytes) or not data:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT, f"{where}: must be non-empty bytes")
    if is_compact(data):
        data = to_seal(data, layout_of(context), where=where)
    try:
        vector = _cpp.CKKSVector(context.data, data)
    except (ValueError, RuntimeError, TypeError):
        raise TesseraError(
            ErrorCode.BAD_CIPHERTEXT,
            f"{where}: not a CKKS ciphertext for these encryption parameters",
        ) from None
    ciphertexts = vector.ciphertext()
    if len(ciphertexts) != 1 or ciphertexts[0].size() != 2:
        raise TesseraError(
            ErrorCode.BAD_CIPHERTEXT, f"{where}: must hold exactly one two-part ciphertext"
        )
    if (tuple(ciphertexts[0].parms_id()) != shape.parms_id
            or ciphertexts[0].scale != shape.scale):
        raise TesseraError(
            ErrorCode.BAD_CIPHERTEXT,
            f"{where}: is not at these parameters' data level and scale",
        )
    size = vector.size()
    if not 1 <= size <= shape.slots:
        raise TesseraError(
            ErrorCode.BAD_CIPHERTEXT,
            f"{where}: claims {size} values, expected 1 to {shape.slots}",
        )
    return vector

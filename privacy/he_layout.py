"""The shape of a CKKS context's fresh ciphertexts, and SEAL's ordinary serialisation of one.

This module owns :class:`Layout` (ring degree, data primes, level, scale: what every fresh
ciphertext of a context has), read once per context from the context's own serialised
encryption parameters and checked against SEAL's product of the primes, and
:func:`seal_vector`, which writes a ciphertext given as arrays in TenSEAL's vector framing
around SEAL's full, uncompressed form, so the library loads it without expanding or
decompressing anything. Used by the compact form (:mod:`privacy.he_compact`) and the running
sum (:mod:`privacy.he_running`).
"""

from __future__ import annotations

import functools
import struct
import weakref
from dataclasses import dataclass

import numpy as np
import tenseal as ts
import zstandard

from common.errors import ErrorCode, TesseraError

#: SEAL 4's serialisation header, and a ciphertext's members before its data.
_SEAL_HEADER = struct.Struct("<HBBBBHQ")
_SEAL_MAGIC = 0xA15E
_SEAL_MEMBERS = struct.Struct("<4QBQQQdQ")


@dataclass(frozen=True)
class Layout:
    """What every fresh ciphertext of one context looks like, and its data primes."""

    degree: int
    moduli: tuple[int, ...]
    parms_id: tuple[int, ...]
    scale: float
    seal_version: tuple[int, int]

    @property
    def slots(self) -> int:
        return self.degree // 2

    @functools.cached_property
    def bits(self) -> tuple[int, ...]:
        return tuple(q.bit_length() for q in self.moduli)

    @functools.cached_property
    def body_bytes(self) -> int:
        """Bytes of one polynomial of ``k`` primes packed to their bit lengths."""
        return sum(self.degree * b // 8 for b in self.bits)

    @functools.cached_property
    def column_moduli(self) -> np.ndarray:
        """The primes as a ``k x 1`` array (to compare with ``... x k x N`` arrays)."""
        return np.array(self.moduli, dtype=np.uint64)[:, None]

    @functools.cached_property
    def masks(self) -> np.ndarray:
        """``2^b_j - 1`` as a ``k x 1`` array."""
        return np.array([(1 << bits) - 1 for bits in self.bits], dtype=np.uint64)[:, None]



_LAYOUTS: weakref.WeakKeyDictionary[ts.Context, Layout] = weakref.WeakKeyDictionary()


def layout_of(context: ts.Context) -> Layout:
    """The layout of ``context``'s fresh ciphertexts (cached per context object)."""
    found = _LAYOUTS.get(context)
    if found is None:
        found = _LAYOUTS[context] = _read_layout(context)
    return found


def _read_layout(context: ts.Context) -> Layout:
    seal = context.seal_context().data
    data = seal.first_context_data()
    degree = int(data.parms().poly_modulus_degree())
    moduli = _data_moduli(context, degree)
    product = _product(moduli)  # SEAL gives its low 64 bits and its bit count
    if (product % (1 << 64) != int(data.total_coeff_modulus())
            or product.bit_length() != int(data.total_coeff_modulus_bit_count())):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "context: its data primes could not be read from its parameters")
    return Layout(degree=degree, moduli=moduli, parms_id=tuple(seal.first_parms_id()),
                  scale=float(context.global_scale), seal_version=_seal_version())


def _product(numbers: tuple[int, ...]) -> int:
    out = 1
    for number in numbers:
        out *= number
    return out


def _data_moduli(context: ts.Context, degree: int) -> tuple[int, ...]:
    """The primes of the data level, read from SEAL's serialised encryption parameters."""
    serialised = context.serialize(save_public_key=False, save_secret_key=False,
                                   save_galois_keys=False, save_relin_keys=False)
    params = unframe_seal(_first_field(bytes(serialised)))
    _scheme, params_degree, count = struct.unpack_from("<BQQ", params)
    offset, moduli = 17, []
    for _ in range(count):
        frame_size = _SEAL_HEADER.unpack_from(params, offset)[6]
        (value,) = struct.unpack_from("<Q", unframe_seal(params[offset:offset + frame_size]))
        moduli.append(value)
        offset += frame_size
    if params_degree != degree or count < 2:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "context: needs a special prime after its data primes")
    return tuple(moduli[:-1])  # the last prime is the key level's special prime


def _first_field(message: bytes) -> bytes:
    """Field 1 of a protobuf message (TenSEAL's context: SEAL's encryption parameters)."""
    if not message or message[0] != 0x0A:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "context: unexpected serialisation")
    length, shift, index = 0, 0, 1
    while True:
        byte = message[index]
        index += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return message[index:index + length]


def unframe_seal(frame: bytes) -> bytes:
    """The body of one SEAL serialisation this process wrote (decompressed when it is)."""
    magic, header_size, _, _, mode, _, size = _SEAL_HEADER.unpack_from(frame)
    if magic != _SEAL_MAGIC or size != len(frame):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "context: unexpected SEAL serialisation")
    body = frame[header_size:size]
    if mode == 0:
        return body
    return zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 28)


@functools.cache
def _seal_version() -> tuple[int, int]:
    """The SEAL version this TenSEAL build writes (read from one of its own contexts)."""
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=4096,
                         coeff_mod_bit_sizes=[40, 20],
                         encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC)
    frame = _first_field(bytes(context.serialize(save_secret_key=False)))
    magic, _, major, minor, _, _, _ = _SEAL_HEADER.unpack_from(frame)
    if magic != _SEAL_MAGIC or major != 4:  # pragma: no cover (another TenSEAL build)
        raise RuntimeError("TenSEAL writes ciphertexts in a format other than SEAL 4's")
    return major, minor


def seal_vector(values: int, c0: np.ndarray, c1: np.ndarray, layout: Layout) -> bytes:
    """TenSEAL's serialisation of the vector ``(c0, c1)`` (SEAL's full form, uncompressed)."""
    primes = len(layout.moduli)
    polys = [np.ascontiguousarray(poly, dtype="<u8").data.cast("B") for poly in (c0, c1)]
    data_bytes = 8 + sum(poly.nbytes for poly in polys)
    members = _SEAL_MEMBERS.pack(*layout.parms_id, 1, 2, layout.degree, primes, layout.scale, 1)
    inner = _seal_header(layout, data_bytes) + struct.pack("<Q", 2 * primes * layout.degree)
    outer = _seal_header(layout, len(members) + len(inner) + data_bytes - 8)
    seal_bytes = len(outer) + len(members) + len(inner) - 8 + data_bytes
    sizes = _varint(values)
    return b"".join([b"\x0a", _varint(len(sizes)), sizes, b"\x12", _varint(seal_bytes),
                     outer, members, inner, *polys, b"\x19", struct.pack("<d", layout.scale)])


def _seal_header(layout: Layout, body_bytes: int) -> bytes:
    major, minor = layout.seal_version
    return _SEAL_HEADER.pack(_SEAL_MAGIC, _SEAL_HEADER.size, major, minor, 0, 0,
                             _SEAL_HEADER.size + body_bytes)


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)

"""CKKS (TenSEAL) keys, chunked encryption and encrypted sums of model updates.

This module owns Tessera's homomorphic-encryption codec: pure functions over bytes and numpy
arrays. Sites hold the *secret context* (secret key only: encryption is symmetric, so there is
no public key, and no relinearisation or Galois keys, since sums need neither). The coordinator
holds the *evaluation context*: encryption parameters and nothing else, enough to add
ciphertexts and not to encrypt or decrypt. A vector longer than one ciphertext's slots travels
as a list of ciphertexts ("chunks") of at most ``slots`` values each.

CKKS wraps silently when a value outgrows the coefficient modulus: callers clip and pre-scale
values and check them with :func:`check_headroom` before encrypting.

Contexts and ciphertexts are parsed (and checked) by :mod:`privacy.he_parse`; the streamed sum
:func:`add_encrypted` lives in :mod:`privacy.he_sum` and is re-exported here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tenseal as ts

from common.errors import ErrorCode, TesseraError
from common.plan_schema import HE_MAX_COEFF_BITS
from privacy.he_parse import load_chunk, load_context, private_context, shape_of, slots_of
from privacy.he_seeded import encrypt_seeded
from privacy.he_sum import add_encrypted as add_encrypted

#: Largest total coefficient-modulus bits at 128-bit classical security per ring degree, for
#: a ternary secret (the HE security standard's table, as SEAL enforces it).
MAX_COEFF_BITS: dict[int, int] = HE_MAX_COEFF_BITS

#: Factor kept between the largest admitted sum and the modulus limit (2**12 in practice:
#: 2**10 here plus one bit per data prime, as SEAL's b-bit primes may be as small as 2**(b-1)).
HEADROOM_SAFETY_BITS = 10

_FINGERPRINT_DOMAIN = b"tessera/ckks-secret-key/v1\x00"


@dataclass(frozen=True)
class CkksParams:
    """CKKS encryption parameters: ring degree, coefficient-modulus primes, encoding scale."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 50, 60)
    global_scale_bits: int = 50

    def __post_init__(self) -> None:
        degree = self.poly_modulus_degree
        if not _is_int(degree) or degree not in MAX_COEFF_BITS:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"poly_modulus_degree: must be one of {sorted(MAX_COEFF_BITS)}, got {degree!r}",
            )
        bits = self.coeff_mod_bit_sizes
        if isinstance(bits, list):  # plans come from TOML, which has lists
            bits = tuple(bits)
            object.__setattr__(self, "coeff_mod_bit_sizes", bits)
        if not isinstance(bits, tuple) or len(bits) < 2:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                "coeff_mod_bit_sizes: must list at least two primes (data primes, then the "
                f"special prime), got {bits!r}",
            )
        if not all(_is_int(b) and 20 <= b <= 60 for b in bits):
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"coeff_mod_bit_sizes: every prime must be 20 to 60 bits, got {bits!r}",
            )
        if sum(bits) > MAX_COEFF_BITS[degree]:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"coeff_mod_bit_sizes: {sum(bits)} bits in total exceed {MAX_COEFF_BITS[degree]}, "
                f"the 128-bit security limit for poly_modulus_degree {degree}",
            )
        scale = self.global_scale_bits
        if not _is_int(scale) or not 1 <= scale < max(bits):
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"global_scale_bits: must be an integer from 1 to {max(bits) - 1} (below the "
                f"largest coefficient prime), got {scale!r}",
            )

    @property
    def slots(self) -> int:
        """Values one ciphertext holds."""
        return self.poly_modulus_degree // 2


@dataclass(frozen=True)
class CkksKeys:
    """A freshly generated key: the sites' secret context and the coordinator's context."""

    secret_context: bytes = field(repr=False)
    evaluation_context: bytes = field(repr=False)
    fingerprint: str

    def __post_init__(self) -> None:
        for name in ("secret_context", "evaluation_context"):
            if not isinstance(getattr(self, name), bytes):
                raise TesseraError(ErrorCode.CONFIG_INVALID, f"{name}: must be bytes")
        if not (
            isinstance(self.fingerprint, str)
            and len(self.fingerprint) == 64
            and all(c in "0123456789abcdef" for c in self.fingerprint)
        ):
            raise TesseraError(
                ErrorCode.CONFIG_INVALID, "fingerprint: must be 64 lowercase hex digits"
            )


def generate_keys(params: CkksParams) -> CkksKeys:
    """Generate a CKKS secret key for ``params`` and its key-free evaluation context."""
    if not isinstance(params, CkksParams):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "params: must be CkksParams")
    try:
        context = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
        )
    except (ValueError, RuntimeError) as exc:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"coeff_mod_bit_sizes: SEAL refused the parameters ({exc})"
        ) from None
    context.global_scale = 2.0**params.global_scale_bits
    # TenSEAL's constructor makes relinearisation keys in memory; they are never serialised,
    # and a context loaded from these bytes has none.
    secret = context.serialize(
        save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
    evaluation = context.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )
    return CkksKeys(
        secret_context=secret,
        evaluation_context=evaluation,
        fingerprint=fingerprint_of_secret(secret),
    )


def fingerprint_of_secret(secret_context: bytes) -> str:
    """SHA-256 (hex) identifying the secret key and parameters of ``secret_context``.

    Computed over a canonical re-serialisation (secret key and parameters only), so the same
    key always gives the same fingerprint. It is a one-way digest of a high-entropy key and
    reveals nothing about it.
    """
    context = private_context(secret_context)
    canonical = context.serialize(
        save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
    return hashlib.sha256(_FINGERPRINT_DOMAIN + canonical).hexdigest()


def encrypt_vector(secret_context: bytes, values: np.ndarray) -> list[bytes]:
    """Encrypt a 1-D array as ciphertexts of at most ``slots`` values each, in order.

    Each ciphertext is in seeded form (:mod:`privacy.he_seeded`): about half the bytes of a
    TenSEAL ciphertext, loaded by any context with these parameters.
    """
    context = private_context(secret_context)
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.size == 0:
        raise TesseraError(ErrorCode.DATA_INVALID, "values: must be a non-empty 1-D numpy array")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise TesseraError(ErrorCode.DATA_INVALID, "values: must hold real numbers")
    flat = values.astype(np.float64, copy=False)
    if not np.all(np.isfinite(flat)):
        raise TesseraError(ErrorCode.DATA_INVALID, "values: must be finite (no NaN or inf)")
    slots = slots_of(context)
    try:
        return [
            encrypt_seeded(context, flat[start : start + slots].tolist())
            for start in range(0, flat.size, slots)
        ]
    except ValueError as exc:  # an asymmetric context saved without its public key
        raise TesseraError(
            ErrorCode.KEY_MISSING, f"secret_context: cannot encrypt ({exc})"
        ) from None


def decrypt_vector(secret_context: bytes, chunks: Sequence[bytes], *, length: int) -> np.ndarray:
    """Decrypt chunks made by :func:`encrypt_vector` (or summed) and return the first ``length``
    values as float64."""
    context = private_context(secret_context)
    if not _is_int(length) or length < 1:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"length: must be an integer >= 1, got {length!r}"
        )
    if isinstance(chunks, bytes | str) or len(chunks) == 0:
        raise TesseraError(ErrorCode.BAD_CIPHERTEXT, "chunks: no ciphertexts to decrypt")
    shape = shape_of(context)
    slots = shape.slots
    parts: list[np.ndarray] = []
    for index, data in enumerate(chunks):
        vector = load_chunk(context, data, shape, where=f"chunks[{index}]")
        if index < len(chunks) - 1 and vector.size() != slots:
            raise TesseraError(
                ErrorCode.BAD_CIPHERTEXT,
                f"chunks[{index}]: holds {vector.size()} values, but every chunk except the "
                f"last must hold {slots}",
            )
        plain = np.asarray(vector.decrypt(), dtype=np.float64)
        if plain.size != vector.size():
            raise TesseraError(
                ErrorCode.BAD_CIPHERTEXT, f"chunks[{index}]: inconsistent chunk size"
            )
        parts.append(plain)
    values = np.concatenate(parts)
    if length > values.size:
        raise TesseraError(
            ErrorCode.BAD_CIPHERTEXT,
            f"chunks: hold {values.size} values, fewer than length {length}",
        )
    return values[:length].copy()


def can_decrypt(context_bytes: bytes) -> bool:
    """Whether a serialized context holds a secret key."""
    return bool(load_context(context_bytes, name="context_bytes").is_private())


def can_encrypt(context_bytes: bytes) -> bool:
    """Whether a serialized context can encrypt (tried for real on one value)."""
    context = load_context(context_bytes, name="context_bytes")
    try:
        ts.ckks_vector(context, [0.0])
    except ValueError:
        return False
    return True


def headroom_bound(params: CkksParams, *, contributors: int) -> float:
    """Largest ``|value|`` one contributor may encrypt so that a sum over ``contributors``
    cannot wrap.

    A fresh ciphertext lives modulo the data primes ``q`` (all but the last, special prime);
    a slot value ``v`` becomes coefficients of magnitude at most ``v * 2**scale_bits``, which
    decode correctly while below ``q / 2``. Each b-bit prime is at least ``2**(b - 1)``, so the
    limit used is ``2**(sum(data bits) - data primes - 1 - scale_bits)``, divided by
    ``2**HEADROOM_SAFETY_BITS`` and by the number of contributors.
    """
    if not isinstance(params, CkksParams):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "params: must be CkksParams")
    if not _is_int(contributors) or contributors < 1:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"contributors: must be an integer >= 1, got {contributors!r}"
        )
    data_bits = params.coeff_mod_bit_sizes[:-1]
    log2_limit = sum(data_bits) - len(data_bits) - 1 - params.global_scale_bits
    return 2.0 ** (log2_limit - HEADROOM_SAFETY_BITS) / contributors


def check_headroom(params: CkksParams, *, max_abs: float, contributors: int) -> None:
    """Refuse a per-contributor magnitude whose sum over ``contributors`` could wrap."""
    if (
        not isinstance(max_abs, int | float)
        or isinstance(max_abs, bool)
        or not (math.isfinite(max_abs) and max_abs >= 0)
    ):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"max_abs: must be a finite number >= 0, got {max_abs!r}"
        )
    bound = headroom_bound(params, contributors=contributors)
    if max_abs > bound:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"max_abs: {max_abs:g} exceeds {bound:g}, the largest magnitude {contributors} "
            "contributors may encrypt without the sum wrapping; clip harder, scale down or "
            "choose larger coeff_mod_bit_sizes",
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

"""The compact ciphertext form: its seed expansion is the documented ChaCha20 rejection
sampler, its packing round-trips at every prime width, every malformed field is refused, and
a sum of compact uploads is the very ciphertext the library's own addition gives."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from common.errors import ErrorCode, TesseraError
from privacy.ckks import (
    CkksKeys,
    CkksParams,
    add_encrypted,
    decrypt_vector,
    encrypt_vector,
    generate_keys,
)
from privacy.he_compact import (
    HEADER_BYTES,
    MAGIC,
    SEED_BYTES,
    Layout,
    expand,
    layout_of,
    pack,
    padded_bodies,
    to_seal,
    unpack,
)
from privacy.he_parse import load_chunk, load_context, shape_of

PARAMS = CkksParams(4096, (58, 20), global_scale_bits=27)


@pytest.fixture(scope="module")
def keys() -> CkksKeys:
    return generate_keys(PARAMS)


def _layout(keys: CkksKeys) -> Layout:
    return layout_of(load_context(keys.evaluation_context, name="evaluation_context"))


def test_the_keystream_is_rfc_8439_chacha20_with_the_documented_nonce_layout() -> None:
    # RFC 8439 section 2.3.2: key 00..1f, nonce 00000009 0000004a 00000000, block counter 1.
    # The library's 16-byte nonce is the 32-bit little-endian counter, then the 96-bit nonce.
    key = bytes(range(32))
    nonce = struct.pack("<I", 1) + bytes.fromhex("000000090000004a00000000")
    block = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor().update(bytes(64))
    assert block[:16].hex() == "10f1e7e4d13b5915500fdd1fa32071c4"


def test_the_data_primes_are_read_from_the_context_and_match_seal() -> None:
    for bits, degree in (((58, 20), 4096), ((60, 27, 20), 4096), ((60, 40, 40, 60), 8192)):
        keys = generate_keys(CkksParams(degree, bits, global_scale_bits=20))
        layout = _layout(keys)
        assert layout.bits == bits[:-1] and layout.degree == degree
        for q in layout.moduli:  # NTT-friendly primes, as SEAL chooses them
            assert q % (2 * degree) == 1 and pow(3, q - 1, q) == 1


def _reference_expand(seed: bytes, layout: Layout) -> np.ndarray:
    """The rule of docs/envelope-format.md section 4.1, one word at a time."""
    out = np.zeros((len(layout.moduli), layout.degree), dtype=np.uint64)
    for j, (q, bits) in enumerate(zip(layout.moduli, layout.bits, strict=True)):
        nonce = bytes(4) + struct.pack("<I", j) + bytes(8)
        stream = Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor()
        kept: list[int] = []
        while len(kept) < layout.degree:
            (word,) = struct.unpack("<Q", stream.update(bytes(8)))
            if word & ((1 << bits) - 1) < q:
                kept.append(word & ((1 << bits) - 1))
        out[j] = kept
    return out


def test_expansion_follows_the_documented_rule_including_rejections() -> None:
    seed = bytes(range(SEED_BYTES))
    # A real prime near 2^58 rejects almost nothing; 2^40 + 1 (not a prime, but a modulus
    # just above a power of two) rejects about half the words, which exercises reading on.
    for moduli in ((288230376151130113,), (2**40 + 1, 288230376151130113)):
        layout = Layout(degree=256, moduli=moduli, parms_id=(0, 0, 0, 0), scale=1.0,
                        seal_version=(4, 1))
        ours = expand(seed, layout)
        assert np.array_equal(ours, _reference_expand(seed, layout))
        assert all((ours[j] < q).all() for j, q in enumerate(moduli))
    assert not np.array_equal(expand(seed, layout), expand(bytes(32), layout))


@pytest.mark.parametrize("moduli", [(288230376151130113,), (2**59 + 1, 2**39 + 7, 2**26 + 5),
                                    (2**63 + 1,), (257,)])
def test_packing_round_trips_at_every_width(moduli: tuple[int, ...]) -> None:
    layout = Layout(degree=64, moduli=moduli, parms_id=(0, 0, 0, 0), scale=1.0,
                    seal_version=(4, 1))
    rng = np.random.default_rng(1)
    polys = np.stack([np.stack([rng.integers(0, q, size=64, dtype=np.uint64, endpoint=False)
                                if q < 2**63 else rng.integers(0, 2**63, size=64,
                                                               dtype=np.uint64)
                                for q in moduli]) for _ in range(3)])
    bodies = [b"x" * HEADER_BYTES + pack(polys[i], layout) for i in range(3)]
    assert all(len(body) - HEADER_BYTES == layout.body_bytes for body in bodies)
    assert layout.body_bytes == sum(64 * q.bit_length() // 8 for q in moduli)
    assert np.array_equal(unpack(padded_bodies(bodies, layout), layout), polys)


def _tampered(chunk: bytes, offset: int, value: bytes) -> bytes:
    return chunk[:offset] + value + chunk[offset + len(value):]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c[:-1], "not a CKKS ciphertext for these encryption parameters"),
        (lambda c: c + b"\0", "not a CKKS ciphertext for these encryption parameters"),
        (lambda c: _tampered(c, 8, struct.pack("<I", 8192)), "not a CKKS ciphertext"),
        (lambda c: _tampered(c, 12, b"\x02"), "not a CKKS ciphertext"),
        (lambda c: _tampered(c, 13, b"\x01"), "data level and scale"),
        (lambda c: _tampered(c, 45, struct.pack("<d", 2.0**30)), "data level and scale"),
        (lambda c: _tampered(c, 4, struct.pack("<I", 0)), "claims 0 values"),
        (lambda c: _tampered(c, 4, struct.pack("<I", 2049)), "claims 2049 values"),
        # The first coefficient of c0 set to all ones in its 58 bits: at least q.
        (lambda c: _tampered(c, HEADER_BYTES, b"\xff" * 7), "outside its modulus"),
    ],
)
def test_a_malformed_compact_chunk_is_refused_by_every_reader(
    keys: CkksKeys, change: object, reason: str
) -> None:
    (chunk,) = encrypt_vector(keys.secret_context, np.ones(10))
    assert chunk[:4] == MAGIC
    if reason == "outside its modulus":  # also set the two high bits (the first bit planes)
        planes = HEADER_BYTES + 4096 * 7
        bad = change(chunk)  # type: ignore[operator]
        bad = _tampered(bad, planes, bytes([bad[planes] | 1]))
        bad = _tampered(bad, planes + 512, bytes([bad[planes + 512] | 1]))
    else:
        bad = change(chunk)  # type: ignore[operator]
    context = load_context(keys.evaluation_context, name="evaluation_context")
    with pytest.raises(TesseraError) as info:
        load_chunk(context, bad, shape_of(context), where="chunks[0]")
    assert info.value.code is ErrorCode.BAD_CIPHERTEXT and reason in info.value.message
    with pytest.raises(TesseraError) as info:
        add_encrypted(keys.evaluation_context, [[chunk], [bad]])
    assert info.value.code is ErrorCode.BAD_CIPHERTEXT
    assert info.value.message.startswith("vectors[1] chunk 0") and reason in info.value.message


def test_the_array_sum_is_the_librarys_sum_byte_for_byte(keys: CkksKeys) -> None:
    rng = np.random.default_rng(4)
    layout = _layout(keys)
    # 70 contributions of a 58-bit prime: past the 63 additions the arrays hold unreduced.
    sites = [rng.uniform(-5000, 5000, 5000) for _ in range(70)]
    uploads = [encrypt_vector(keys.secret_context, v) for v in sites]
    ours = add_encrypted(keys.evaluation_context, uploads, workers=0)
    # The same ciphertexts as ordinary TenSEAL vectors go through the library's addition.
    library = add_encrypted(keys.evaluation_context,
                            [[to_seal(c, layout, where="x") for c in up] for up in uploads],
                            workers=0)
    assert ours == library
    mixed = add_encrypted(keys.evaluation_context,
                          [[to_seal(c, layout, where="x") for c in up] if i % 3 else up
                           for i, up in enumerate(uploads)], workers=0)
    assert mixed == ours
    total = decrypt_vector(keys.secret_context, ours, length=5000)
    assert float(np.max(np.abs(total - np.sum(sites, axis=0)))) <= 1e-4


def test_a_compact_upload_is_smaller_than_the_seal_seeded_form(keys: CkksKeys) -> None:
    (chunk,) = encrypt_vector(keys.secret_context, np.ones(2048))
    # N x 58 bits of c0 plus the header and seed; SEAL's seeded form was 32,013 bytes.
    assert len(chunk) == HEADER_BYTES + 4096 * 58 // 8 == 29_781

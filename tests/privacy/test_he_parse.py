"""Behaviour of the parsing edge of the CKKS codec: what a worker is given, what a chunk must be."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ErrorCode, TesseraError
from privacy.ckks import CkksParams, can_decrypt, can_encrypt, encrypt_vector, generate_keys
from privacy.he_parse import load_chunk, load_context, parameters_only, shape_of


def test_parameters_only_carry_no_key_but_parse_the_same_ciphertexts() -> None:
    keys = generate_keys(CkksParams(4096, (58, 20), global_scale_bits=27))
    secret = load_context(keys.secret_context, name="secret_context")
    stripped = parameters_only(secret)

    assert not can_decrypt(stripped) and not can_encrypt(stripped)
    context = load_context(stripped, name="parameters")
    shape = shape_of(context)
    assert shape == shape_of(secret)
    assert shape.slots == 2048 and shape.scale == 2.0**27
    (chunk,) = encrypt_vector(keys.secret_context, np.ones(5))
    assert load_chunk(context, chunk, shape, where="chunk").size() == 5


def test_a_chunk_of_other_parameters_is_refused_naming_where_it_came_from() -> None:
    ours = generate_keys(CkksParams(4096, (58, 20), global_scale_bits=27))
    theirs = generate_keys(CkksParams(4096, (58, 20), global_scale_bits=30))
    context = load_context(ours.evaluation_context, name="evaluation_context")
    (chunk,) = encrypt_vector(theirs.secret_context, np.ones(5))

    with pytest.raises(TesseraError) as info:
        load_chunk(context, chunk, shape_of(context), where="vectors[4] chunk 2")
    assert info.value.code is ErrorCode.BAD_CIPHERTEXT
    assert info.value.message == (
        "vectors[4] chunk 2: is not at these parameters' data level and scale")

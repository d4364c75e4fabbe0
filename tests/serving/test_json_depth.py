"""The sliced depth count agrees with counting after removing the strings (the guard's earlier
method), across slice boundaries, escapes and invalid text, in bounded memory."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from serving import json_depth
from serving.json_depth import max_depth
from serving.security import json_depth_exceeds
from tests.serving.record_factory import realistic_record, record_bytes

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def reference_depth(body: bytes) -> int:
    """Strings removed by a regular expression, then the brackets counted."""
    steps = [
        {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}[b]
        for b in _JSON_STRING.sub(b"", body)
        if b in b"[]{}"
    ]
    return int(max(np.cumsum([0, *steps]))) if steps else 0


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": "]]]"}]}', 3),
        (b'["\\"[[[", [[]]]', 3),
        (b'["\\\\", [[]]]', 3),
        (b'["\\\\\\"[", []]', 2),
        (b"[" * 100 + b"]" * 100, 100),
    ],
)
def test_strings_and_escapes_do_not_count(text, depth):
    assert max_depth(text) == depth == reference_depth(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300).map(lambda b: b.translate(bytes.maketrans(b"abcdef", b'[]{}"\\'))))
def test_any_text_counts_as_the_reference_across_slice_boundaries(text):
    # An unclosed string: a parser stops there, the reference counts what follows as brackets.
    assume(b'"' not in _JSON_STRING.sub(b"", text))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_depth, "SLICE_BYTES", 7)
        assert max_depth(text) == reference_depth(text)


def test_a_ten_megabyte_record_is_counted_in_a_few_megabytes():
    body = record_bytes(realistic_record(10_000_000))

    tracemalloc.start()
    try:
        exceeds = json_depth_exceeds(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert exceeds is False
    assert max_depth(body) == reference_depth(body)
    assert peak < 20 * 2**20

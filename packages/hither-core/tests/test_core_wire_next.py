"""``hither.runtime.wire`` (the wire format written on the value grammar) gives byte for
byte the output of the encoder it replaced (``wire_before``, kept as the oracle) and decodes
exactly as its ``decode_value``, on every hither value (property-based), with Files, stored results, NaN
payloads, dicts with a ``"_hither"`` key and keys UTF-8 cannot hold; so it can replace them.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hither.runtime import wire as wire_next

from . import wire_before as runner
from hither.testing.value_strategies import Color, assert_exact, hither_values, texts
from hither.values.file import File
from hither.values.refs import StoredResult

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])
_FILE = File.from_uri("sha1://" + "1" * 40 + "/a.txt")
_REF = StoredResult({"_hither": "tuple", "items": [1, {"_hither": "ndarray", "uri": "sha1://" + "2" * 40}]}, None)

extra_leaves = st.sampled_from([_FILE, _REF, float("nan"), struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\xff")[0],
                                -float("inf"), "\udc80x", Color.GREEN])
values = st.recursive(hither_values(4) | extra_leaves,
                      lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
                      | st.dictionaries(st.sampled_from(["_hither", "a", "\udcff"]) | texts(2), inner, max_size=3),
                      max_leaves=8)


def _sink():
    arrays = []

    def sink(a):
        arrays.append(a)
        return "a%d" % (len(arrays) - 1)

    return arrays, sink


@FAST
@given(values)
def test_encoding_is_byte_identical_to_the_runners(v):
    arrays_old, sink_old = _sink()
    arrays_new, sink_new = _sink()
    old = runner.encode_value(v, sink_old)
    new = wire_next.encode_value(v, sink_new)
    assert json.dumps(new) == json.dumps(old)
    assert len(arrays_new) == len(arrays_old)
    for a, b in zip(arrays_new, arrays_old):
        assert_exact(a, b)


@FAST
@given(values, st.booleans())
def test_decoding_gives_what_the_runners_gives(v, exact):
    arrays, sink = _sink()
    enc = json.loads(json.dumps(runner.encode_value(v, sink)))

    def source(ref):
        return arrays[int(ref[1:])]

    try:
        old = runner.decode_value(enc, source, dict, exact=exact)
    except Exception as e:  # noqa: BLE001 - e.g. a stored result's node has no "ref"
        with pytest.raises(type(e)):
            wire_next.decode_value(enc, source, dict, exact=exact)
        return
    _assert_same(wire_next.decode_value(enc, source, dict, exact=exact), old)


def _assert_same(new, old):
    if isinstance(old, float) and math.isnan(old):
        assert struct.pack("<d", new) == struct.pack("<d", old)
    elif isinstance(old, (list, tuple)):
        assert type(new) is type(old) and len(new) == len(old)
        for a, b in zip(new, old):
            _assert_same(a, b)
    elif isinstance(old, dict):
        assert type(new) is type(old) and list(new) == list(old)
        for k in old:
            _assert_same(new[k], old[k])
    else:
        assert_exact(new, old)


def test_file_encoder_and_errors_are_the_runners():
    def enc(f):
        return {"_hither": "file", "uri": f.uri, "mine": True}

    v = {"f": [_FILE]}
    assert wire_next.encode_value(v, None, enc) == runner.encode_value(v, None, enc)
    for bad in (object(), {1, 2}, b"x"):
        with pytest.raises(TypeError) as e_old:
            runner.encode_value([bad], None)
        with pytest.raises(TypeError) as e_new:
            wire_next.encode_value([bad], None)
        assert str(e_new.value) == str(e_old.value)
    with pytest.raises(ValueError, match="unknown hither wire tag 'nope'"):
        wire_next.decode_value({"_hither": "nope"}, None)
    typed = {"_hither": "typed", "type": "no_such_module:Thing", "value": 3}
    assert wire_next.decode_value(typed, None) == 3
    with pytest.raises(ValueError, match="no_such_module.Thing cannot be rebuilt here"):
        wire_next.decode_value(typed, None, exact=True)


def test_deep_values_encode_and_decode():
    v: object = 1
    for i in range(300):
        v = [v] if i % 2 else (v,)
    enc = wire_next.encode_value(v, None)
    assert json.dumps(enc) == json.dumps(runner.encode_value(v, None))
    assert wire_next.decode_value(enc, None) == v
    assert np.array(wire_next.decode_value(wire_next.encode_value(np.float32(2), None), None)) == 2

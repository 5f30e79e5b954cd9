"""Large arrays nested inside the typed wire forms (a tuple, a dict that has a "_hither" key,
a dict with a key UTF-8 cannot hold, the array form of a structured scalar, a list) cross
``hither.outside.documents`` (pack into a real content store, unpack) and come back through
``hither.values.refs.StoredResult`` exactly: type, dtype (byte order, fields, offsets), shape and
every byte of the values. A property test over nesting, and one job end to end (runner in
a fresh interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hither as hi
from hither.outside.jobdir import array_sink, write_job_dir
from hither.values.refs import StoredResult
from hither.runtime import RESULT, encode_value
from hither.testing.container_conformance import ParkedHandler
from hither.testing.value_strategies import arrays, assert_exact, hither_values, unmapped
from hither.outside.documents import pack_job, pack_outputs, unpack_job, unpack_outputs

sys.path.insert(0, os.path.dirname(__file__))
import transport_funcs as tf  # noqa: E402

hither_store = pytest.importorskip("hither_store")

INLINE_MAX = 1024  # arrays of this many bytes or more travel by URI
BIG_DTYPES = [np.dtype(t) for t in (
    "<f8", ">f8", ">i4", "<u2", ">M8[ns]", "<M8[us]", ">m8[ms]", "<m8", ">c16", ">U3", "S5")] + [
    np.dtype([("t", ">M8[ns]"), ("x", ">f8"), ("n", "<i2")]),
    np.dtype([("a", "u1"), ("b", ">i4", (2,))], align=True),
]
#: a structured scalar whose array form is large (a sub-array field of 200 big-endian floats)
BIG_VOID = np.dtype([("id", ">u4"), ("samples", ">f8", (200,))])


def big_arrays() -> st.SearchStrategy:
    """Arrays of at least INLINE_MAX bytes (so they go to the store) of assorted dtypes."""
    def build(dt: np.dtype) -> st.SearchStrategy:
        n = -(-INLINE_MAX // dt.itemsize)
        return hnp.arrays(dt, st.tuples(st.integers(n, 2 * n)) | st.just((2, n)))
    return st.sampled_from(BIG_DTYPES).flatmap(build)


def big_void_scalars() -> st.SearchStrategy:
    return hnp.arrays(BIG_VOID, (1,)).map(lambda a: a[0])


def nested(leaves: st.SearchStrategy) -> st.SearchStrategy:
    """``leaves`` wrapped in every typed wire form, at any depth."""
    keys = st.sampled_from(["a", "b", "_hither", "\udcff name", "é"])
    return st.recursive(
        leaves,
        lambda inner: (st.lists(inner, min_size=1, max_size=3)
                       | st.lists(inner, min_size=1, max_size=3).map(tuple)
                       | st.dictionaries(keys, inner, min_size=1, max_size=3)),
        max_leaves=6)


values = nested(st.one_of(big_arrays(), big_arrays(), big_void_scalars(), arrays(), hither_values(2)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("nested")
    return hither_store.Store(str(d / "store"), cache_dir=str(d / "cache"))


def _as_result_dir(value, job_dir: str) -> None:
    """``value`` written as a runner writes a result: arrays as .npy files, result.json."""
    os.makedirs(job_dir, exist_ok=True)
    with open(os.path.join(job_dir, RESULT), "w") as f:
        json.dump({"value": encode_value(value, array_sink(job_dir, "result"))}, f)


def _read_only(m) -> None:
    assert not m.flags.writeable  # zero copy, by design: the stored blob itself


def _plain(v):
    """``v`` with each read-only memory map of a stored array seen as the ndarray it maps."""
    return unmapped(v, _read_only)


def _uris(doc) -> int:
    return json.dumps(doc).count('"uri": "sha1://')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.data_too_large])
@given(value=values)
def test_nested_arrays_cross_exactly(value, store, tmp_path_factory):
    d = tmp_path_factory.mktemp("there")
    _as_result_dir(value, str(d / "job"))
    doc = json.loads(json.dumps(pack_outputs(str(d / "job"), store, inline_max_bytes=INLINE_MAX)))
    assert _uris(doc) == sum(1 for _, _, files in os.walk(d / "job" / "arrays") for f in files
                             if os.path.getsize(d / "job" / "arrays" / f) >= INLINE_MAX)
    assert_exact(_plain(StoredResult(doc["result"]["value"], store).materialize()), value)
    status, got, error, ri = unpack_outputs(doc, str(d / "back"), store)
    assert error is None, error
    assert_exact(got, value)


def test_a_job_gets_and_returns_large_nested_arrays_exactly(tmp_path, store, monkeypatch):
    """Arguments there (pack_job / unpack_job, the runner in a fresh interpreter) and the
    result back (pack_outputs, StoredResult and unpack_outputs): nothing changes on the way."""
    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "file-store"))
    rng = np.random.default_rng(5)
    big = np.arange(300_000).astype(">M8[ns]")  # 2.4 MB: by URI
    rec = np.zeros(20_000, dtype=[("t", ">M8[ns]"), ("x", ">f8"), ("n", "<i2")])
    rec["x"] = rng.normal(size=rec.size)
    rec["t"] = np.arange(rec.size).astype(">M8[s]")
    void = np.zeros(1, dtype=[("id", ">u4"), ("samples", ">f8", (40_000,))])[0]
    value = {
        "pair": (big, ">i4 next"),
        "tagged": {"_hither": [rec, rng.normal(size=(400, 300)).astype(">f8")]},
        "\udcff odd key": {"x": rng.integers(0, 2 ** 31, size=70_000).astype(">i4")},
        "scalar": void,
        "list": [np.arange(50_000).astype(">m8[ms]"), np.arange(3, dtype="<f8")],
    }
    with hi.Config(job_handler=ParkedHandler()):  # written into a job directory only
        job = tf.echo_value.run(x=value)
    here = tmp_path / "here"
    write_job_dir(job, str(here))
    job.cancel()
    doc = json.loads(json.dumps(pack_job(str(here), store)))
    assert len(json.dumps(doc)) < 100_000 and _uris(doc["args"]) == 6
    there = tmp_path / "there"
    unpack_job(doc, str(there), store)
    proc = subprocess.run([sys.executable, "-I", str(there / "runner.py"), str(there)],
                          capture_output=True, text=True, timeout=120, cwd=str(there))
    assert proc.returncode == 0, proc.stderr
    back = json.loads(json.dumps(pack_outputs(str(there), store)))
    assert _uris(back) == 6
    assert_exact(_plain(StoredResult(back["result"]["value"], store).materialize()), value)
    status, got, error, ri = unpack_outputs(back, str(tmp_path / "back"), store)
    assert error is None, error
    assert_exact(got, value)

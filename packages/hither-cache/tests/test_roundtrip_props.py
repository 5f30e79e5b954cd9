"""Every value hither accepts comes back from the cache exactly (property-based, with
hypothesis): type at every level (Enums, numpy scalar kinds, tuple vs list), dtype with its
fields and offsets, shape and meaningful bytes, from the file backend, through
``hi.JobCache`` end to end, and from the MongoDB backend on the real server.
"""
from __future__ import annotations

import hashlib
import itertools
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import hither as hi
from hither.models import CacheEntry, JobStatus, RuntimeInfo
from hither.testing.value_strategies import Color, assert_exact, hither_values, numpy_scalars
from hither.values.grammar import job_hash
from hither_cache import FileCacheBackend

_n = itertools.count()
PROPS = settings(max_examples=50, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _entry(result):
    return CacheEntry(job_hash=hashlib.sha1(b"rt%d" % next(_n)).hexdigest(), function_name="f",
                      function_version="1", status=JobStatus.FINISHED, result=result,
                      runtime_info=RuntimeInfo(status=JobStatus.FINISHED), created_at=0.0)


@pytest.fixture(scope="module")
def file_backend():
    with tempfile.TemporaryDirectory(prefix="hither-rt-") as d:
        # mmap_min_bytes=0: arrays come back memory-mapped, the other read path
        yield FileCacheBackend(d), FileCacheBackend(d, mmap_min_bytes=0)


@PROPS
@given(hither_values())
def test_every_value_comes_back_exactly_from_the_file_cache(file_backend, v):
    for backend in file_backend:
        e = _entry(v)
        backend.put(e)
        got = backend.get(e.job_hash)
        assert got is not None, "the entry was not readable"
        assert_exact(got.result, v)
        assert job_hash("f", "1", {"x": got.result}) == job_hash("f", "1", {"x": v})


@PROPS
@given(numpy_scalars())
def test_every_numpy_scalar_kind_comes_back_from_the_file_cache(file_backend, v):
    e = _entry({"s": v, "in": [v]})
    file_backend[0].put(e)
    got = file_backend[0].get(e.job_hash)
    assert got is not None
    assert_exact(got.result, {"s": v, "in": [v]})


def test_the_examples_of_issue_8_come_back(file_backend):
    dt = np.dtype([("a", "u1"), ("b", "<f8")], align=True)
    values = [np.zeros((), dt)[()], np.str_(""), np.bytes_(b""), Color.RED,
              np.array(["2020-01-01", "NaT"], "M8[s]"), np.longdouble(1) / 3]
    e = _entry(values)
    file_backend[0].put(e)
    got = file_backend[0].get(e.job_hash)
    assert got is not None, "an empty np.str_ (or a structured scalar) made the entry unreadable"
    assert_exact(got.result, values)
    assert got.result[0].dtype.names == ("a", "b")


@hi.function("rt_echo", "0.1.0")
def rt_echo(x):
    return x


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(hither_values())
def test_job_cache_hits_give_the_value_back_exactly(tmp_path, v):
    with hi.Config(job_cache=hi.JobCache(path=str(tmp_path / "jc"))):
        first = rt_echo.run(x=v)
        assert_exact(first.wait(), v)
        again = rt_echo.run(x=v)
        assert_exact(again.wait(), v)
        assert again.get_runtime_info().cached, "an equal argument missed the cache"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(hither_values())
def test_every_value_comes_back_exactly_from_the_mongo_cache(mongo_db, v):
    from hither_cache import MongoCacheBackend

    backend = MongoCacheBackend(mongo_db, inline_limit=4 << 20)
    try:
        e = _entry(v)
        backend.put(e)
        got = backend.get(e.job_hash)
        assert got is not None, "the entry was not readable"
        assert_exact(got.result, v)
    finally:
        backend.close()


def test_equal_arguments_with_other_padding_or_layout_hit_the_cache(tmp_path):
    # issue 8: padding bytes were hashed (equal values missed) and datetime64 arrays could
    # not be hashed at all ("cannot include dtype 'M' in a buffer")
    dt = np.dtype([("a", "u1"), ("b", "<f8")], align=True)
    a = np.zeros(3, dt)
    noisy = np.frombuffer(bytearray(b"\x77" * a.nbytes), dtype=dt)
    noisy["a"], noisy["b"] = 0, 0.0
    ld = np.array([1 / 3], np.longdouble)
    ld2 = ld.copy()
    ld2.view(np.uint8)[10:] = 0x33
    when = np.array(["2020-01-01T00:00", "NaT"], "M8[m]")
    grid = np.arange(12.0).reshape(3, 4)
    with hi.Config(job_cache=hi.JobCache(path=str(tmp_path / "jc"))):
        for first, second in [(a, noisy), (ld, ld2), (when, when.copy()),
                              (grid, np.asfortranarray(grid))]:
            rt_echo.run(x=first).wait()
            job = rt_echo.run(x=second)
            assert_exact(job.wait(), first)
            assert job.get_runtime_info().cached, f"{second!r} missed"


_DT = np.dtype([("a", "u1"), ("t", "<M8[ms]"), ("x", "<i2", (2,))], align=True)
EVERY_SCALAR_KIND = [
    np.bool_(True), np.int8(-3), np.uint16(7), np.int32(-9), np.uint64(2 ** 64 - 1),
    np.float16(1.5), np.float32(-0.0), np.float64(np.nan), np.longdouble(1) / 3,
    np.complex64(1 - 2j), np.complex128(np.inf), np.clongdouble(1 + 1j) / 3,
    np.str_(""), np.str_("héllo"), np.bytes_(b""), np.bytes_(b"\x00a"),
    np.datetime64("2020-01-01T12:00", "m"), np.datetime64("NaT"), np.timedelta64(-5, "us"),
    np.void(b"\x01\x02\x03"), np.array([(1, 5, [2, 3])], _DT)[0],
]


@pytest.mark.parametrize("v", EVERY_SCALAR_KIND, ids=lambda v: f"{type(v).__name__}-{v.dtype.str}")
def test_each_numpy_scalar_kind_comes_back_from_the_file_cache(file_backend, v):
    e = _entry([v])
    file_backend[0].put(e)
    got = file_backend[0].get(e.job_hash)
    assert got is not None, f"{v!r} made the entry unreadable"
    assert_exact(got.result, [v])

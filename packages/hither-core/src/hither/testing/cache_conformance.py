"""Conformance tests every ``hither.plugins.interfaces.CacheBackend`` must pass (needs pytest).

A backend's test module subclasses :class:`CacheBackendConformance` and provides the
fixture ``cache_spec``: ``(backend class, keyword arguments)`` for a fresh, empty cache
location. Each call of ``cls(**kwargs)`` must open that same location (the tests make
several instances: other processes, a reopened cache). Example::

    from hither.testing.cache_conformance import CacheBackendConformance
    from hither_cache.file_backend import FileCacheBackend

    class TestFileConformance(CacheBackendConformance):
        @pytest.fixture
        def cache_spec(self, tmp_path):
            return FileCacheBackend, {"path": str(tmp_path / "jc")}

Class attributes tune the heavier tests: ``stress_array_bytes`` (array size written by
the concurrency tests), ``stress_processes``, ``stress_rounds``, ``large_array_bytes``.
"""
from __future__ import annotations

import hashlib
import math
import multiprocessing
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

from hither.values.file import File
from hither.plugins.interfaces import CacheBackend
from hither.models import CacheEntry, ErrorInfo, JobStatus, RuntimeInfo
from hither.testing._stress import check_entry, make_entry, stress_process, stress_worker

Spec = Tuple[Callable[..., CacheBackend], Dict[str, Any]]


def job_hash(label: str) -> str:
    """A job hash (40 hex digits) derived from ``label``."""
    return hashlib.sha1(label.encode()).hexdigest()


def entry(label: str = "e", result: Any = None, **kw: Any) -> CacheEntry:
    """A finished entry for ``job_hash(label)`` holding ``result``."""
    base: Dict[str, Any] = dict(job_hash=job_hash(label), function_name="f", function_version="0.1.0",
                                status=JobStatus.FINISHED, result=result, hither_version="0.1.0",
                                runtime_info=RuntimeInfo(status=JobStatus.FINISHED))
    base.update(kw)
    return CacheEntry(**base)


def assert_same_value(got: Any, want: Any, path: str = "result") -> None:
    """``got`` equals ``want`` as hither values: same types (tuple is not list), arrays
    equal with dtype and shape, NaN equal to NaN, numpy scalars with their dtype."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{path}: {type(got).__name__} is not an array"
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{path}: shape {got.shape} != {want.shape}"
        assert np.array_equal(got, want, equal_nan=want.dtype.kind in "fc"), f"{path}: values differ"
        return
    if isinstance(want, np.generic):
        assert type(got) is type(want) and got.dtype == want.dtype, \
            f"{path}: {type(got).__name__} != {type(want).__name__}"
        assert got.tobytes() == want.tobytes(), f"{path}: {got!r} != {want!r}"
        return
    if isinstance(want, File):
        assert isinstance(got, File) and got.uri == want.uri, f"{path}: {got!r} != {want!r}"
        return
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_value(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_same_value(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), f"{path}: {got!r} is not nan"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


VALUES: Dict[str, Any] = {
    "none": None,
    "bool": True,
    "int": -7,
    "bigint": 2**100 + 1,
    "float": 0.1,
    "floats": [float("nan"), float("inf"), float("-inf"), -0.0],
    "str": "héllo ☃\n\x00",
    "empty": ["", [], (), {}],
    "tuple": (1, (2, 3), [4, (5,)]),
    "list": [1, "a", None, [2.5]],
    "dict": {"a": 1, "b": {"c": (1, 2)}, "": 0},
    "odd_keys": {"$set": 1, "a.b": 2, "_hither": "x", "_id": 3},
    "npscalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.complex128(1 - 2j), np.uint8(255)],
    "arrays": {
        "f8": np.linspace(0, 1, 11),
        "f4_nan": np.array([1.0, np.nan], dtype=np.float32),
        "i1": np.arange(-5, 5, dtype=np.int8),
        "u8": np.array([2**64 - 1], dtype=np.uint64),
        "bool": np.array([True, False]),
        "c16": np.array([1 + 2j]),
        "big_endian": np.arange(4, dtype=">i4"),
        "unicode": np.array(["ab", "ç"]),
        "datetime": np.array(["2024-01-01"], dtype="datetime64[D]"),
        "structured": np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "nested": np.zeros(2, dtype=[("a", "<i4", (2,)), ("b", [("c", ">f8"), ("d", "S3")])]),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "strided": np.arange(20)[::3],
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 3)),
        "three_d": np.arange(24, dtype=np.int16).reshape(2, 3, 4),
    },
    "file": File.from_uri("sha1://" + "a" * 40 + "/data.csv"),
}


class CacheBackendConformance:
    """The behaviour tests of a ``CacheBackend``; subclass and provide ``cache_spec``::

        class TestMongoConformance(CacheBackendConformance):
            stress_array_bytes = 64 * 1024       # a slower backend: lighter stress tests

            @pytest.fixture
            def cache_spec(self, mongo_db):
                return MongoCacheBackend, {"database": mongo_db}
    """

    stress_processes = 8
    stress_rounds = 6
    stress_keys = 3
    stress_array_bytes = 256 * 1024
    large_array_bytes = 8 * 1024 * 1024

    @pytest.fixture
    def cache_spec(self) -> Spec:  # pragma: no cover - provided by subclasses
        raise NotImplementedError("provide a cache_spec fixture: (backend class, kwargs)")

    @pytest.fixture
    def open_cache(self, cache_spec: Spec) -> Callable[[], CacheBackend]:
        """Opens another instance over the same location."""
        cls, kwargs = cache_spec
        return lambda: cls(**kwargs)

    @pytest.fixture
    def backend(self, open_cache: Callable[[], CacheBackend]) -> CacheBackend:
        return open_cache()

    # ------------------------------------------------------------------ basics
    def test_is_a_cache_backend(self, backend: CacheBackend) -> None:
        assert isinstance(backend, CacheBackend)
        assert backend.name
        assert isinstance(backend.describe(), str) and backend.describe()

    def test_missing_is_none(self, backend: CacheBackend) -> None:
        assert backend.get(job_hash("absent")) is None
        assert list(backend.iter_hashes()) == []

    def test_roundtrip_every_field(self, backend: CacheBackend) -> None:
        ri = RuntimeInfo(status=JobStatus.FINISHED, stdout="out\n", stderr="err\n", start_time=10.5,
                         end_time=12.25, host="hostA", pid=1234, handler="parallel", cached=False,
                         extra_field={"k": [1, 2]})  # type: ignore[call-arg]  # extra fields are kept
        e = entry("fields", result=[1, "two"], function_name="fn", function_version="1.2.3",
                  code_hash="c0de", hither_version="9.8.7", created_at=1700000000.125, runtime_info=ri)
        backend.put(e)
        got = backend.get(e.job_hash)
        assert got is not None
        for field in ("job_hash", "function_name", "function_version", "status", "code_hash",
                      "hither_version", "created_at", "error"):
            assert getattr(got, field) == getattr(e, field), field
        assert_same_value(got.result, [1, "two"])
        assert got.runtime_info.model_dump() == ri.model_dump()
        assert got.runtime_info.elapsed == 1.75

    def test_error_entry(self, backend: CacheBackend) -> None:
        err = ErrorInfo(type_module="builtins", type_name="ValueError", message="bad x: 3",
                        args_json=["bad x: 3"], traceback="Traceback (most recent call last):\n  ...\n")
        e = entry("err", status=JobStatus.ERROR, error=err,
                  runtime_info=RuntimeInfo(status=JobStatus.ERROR, stderr="oops"))
        backend.put(e)
        got = backend.get(e.job_hash)
        assert got is not None and got.status == JobStatus.ERROR
        assert got.result is None
        assert got.error == err
        assert got.runtime_info.stderr == "oops"

    def test_finished_with_none_result(self, backend: CacheBackend) -> None:
        backend.put(entry("none", result=None))
        got = backend.get(job_hash("none"))
        assert got is not None and got.status == JobStatus.FINISHED and got.result is None

    @pytest.mark.parametrize("kind", sorted(VALUES))
    def test_value_roundtrip(self, backend: CacheBackend, kind: str) -> None:
        backend.put(entry(kind, result=VALUES[kind]))
        got = backend.get(job_hash(kind))
        assert got is not None
        assert_same_value(got.result, VALUES[kind])

    def test_all_values_in_one_result(self, backend: CacheBackend) -> None:
        value = (VALUES, [VALUES["arrays"]["f8"], VALUES["arrays"]["f8"]])
        backend.put(entry("all", result=value))
        got = backend.get(job_hash("all"))
        assert got is not None
        assert_same_value(got.result, value)

    def test_large_array(self, backend: CacheBackend) -> None:
        a = np.random.default_rng(0).standard_normal(self.large_array_bytes // 8)
        backend.put(entry("large", result={"a": a}))
        got = backend.get(job_hash("large"))
        assert got is not None
        assert_same_value(got.result, {"a": a})

    def test_changing_a_returned_array_leaves_the_cache_alone(self, backend: CacheBackend) -> None:
        a = np.arange(self.large_array_bytes // 8, dtype=np.float64)
        backend.put(entry("mut", result=(a, a[:5].copy())))
        for _ in range(2):
            got = backend.get(job_hash("mut"))
            assert got is not None
            for arr in got.result:
                if arr.flags.writeable:
                    arr[:3] = -1.0
        fresh = backend.get(job_hash("mut"))
        assert fresh is not None
        assert_same_value(fresh.result, (a, a[:5].copy()))

    # ------------------------------------------------------------------ replace / delete / list
    def test_put_replaces(self, backend: CacheBackend) -> None:
        backend.put(entry("r", result={"v": np.arange(3)}, created_at=1.0))
        backend.put(entry("r", result=("new",), created_at=2.0, function_version="0.2.0"))
        got = backend.get(job_hash("r"))
        assert got is not None
        assert got.result == ("new",) and got.created_at == 2.0 and got.function_version == "0.2.0"
        assert list(backend.iter_hashes()) == [job_hash("r")]

    def test_delete(self, backend: CacheBackend) -> None:
        backend.put(entry("d1", result=np.arange(4)))
        backend.put(entry("d2", result=1))
        assert backend.delete(job_hash("d1")) is True
        assert backend.get(job_hash("d1")) is None
        assert backend.delete(job_hash("d1")) is False
        assert backend.get(job_hash("d2")) is not None

    def test_iter_hashes(self, backend: CacheBackend) -> None:
        labels = [f"h{i}" for i in range(5)]
        for label in labels:
            backend.put(entry(label, result=label))
        assert sorted(backend.iter_hashes()) == sorted(job_hash(x) for x in labels)

    def test_clear_all(self, backend: CacheBackend) -> None:
        for i in range(3):
            backend.put(entry(f"c{i}", result=np.arange(i + 1)))
        assert backend.clear() == 3
        assert list(backend.iter_hashes()) == []
        assert backend.get(job_hash("c0")) is None

    def test_clear_older_than(self, backend: CacheBackend) -> None:
        now = time.time()
        backend.put(entry("old", result=1, created_at=now - 10 * 86400))
        backend.put(entry("new", result=2, created_at=now - 60))
        assert backend.clear(older_than=now - 86400) == 1
        assert backend.get(job_hash("old")) is None
        assert backend.get(job_hash("new")) is not None

    def test_entries_persist_across_instances(self, backend: CacheBackend,
                                              open_cache: Callable[[], CacheBackend]) -> None:
        backend.put(entry("p", result={"a": np.arange(5.0)}))
        other = open_cache()
        got = other.get(job_hash("p"))
        assert got is not None
        assert_same_value(got.result, {"a": np.arange(5.0)})
        other.put(entry("p", result="replaced"))
        got2 = backend.get(job_hash("p"))
        assert got2 is not None and got2.result == "replaced"

    # ------------------------------------------------------------------ concurrency
    def test_concurrent_threads_see_whole_entries(self, backend: CacheBackend) -> None:
        hashes = [job_hash(f"t{i}") for i in range(self.stress_keys)]
        problems: List[str] = []
        lock = threading.Lock()

        def work(writer: int) -> None:
            try:
                found = stress_worker((lambda: backend, {}), writer, hashes, self.stress_rounds,
                                      self.stress_array_bytes)
            except Exception as exc:  # noqa: BLE001
                found = [f"writer {writer}: {type(exc).__name__}: {exc}"]
            with lock:
                problems.extend(found)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert problems == []
        self._check_final(backend, hashes)

    @pytest.mark.slow
    def test_concurrent_processes_see_whole_entries(self, cache_spec: Spec,
                                                    backend: CacheBackend) -> None:
        hashes = [job_hash(f"p{i}") for i in range(self.stress_keys)]
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded test process
        n = self.stress_processes
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=stress_process, args=(cache_spec, w, hashes, self.stress_rounds,
                                                          self.stress_array_bytes, barrier, results))
                 for w in range(n)]
        for p in procs:
            p.start()
        reports: Dict[int, List[str]] = {}
        deadline = time.monotonic() + 180
        try:
            while len(reports) < n and time.monotonic() < deadline:
                try:
                    w, found = results.get(timeout=0.5)
                    reports[w] = found
                except queue.Empty:
                    if not any(p.is_alive() for p in procs) and results.empty():
                        break  # a worker died without reporting (e.g. SIGBUS on a mapping)
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
                    p.join()
        dead = {w: p.exitcode for w, p in enumerate(procs) if w not in reports}
        assert not dead, f"workers died without reporting (worker: exit code): {dead}"
        assert [p for ps in reports.values() for p in ps] == []
        self._check_final(backend, hashes)

    def _check_final(self, backend: CacheBackend, hashes: List[str]) -> None:
        assert sorted(backend.iter_hashes()) == sorted(hashes)
        for h in hashes:
            got = backend.get(h)
            assert got is not None, f"{h} is missing after the writers finished"
            assert check_entry(got, h, self.stress_array_bytes) == []


__all__ = ["CacheBackendConformance", "VALUES", "assert_same_value", "entry", "job_hash",
           "make_entry", "check_entry"]

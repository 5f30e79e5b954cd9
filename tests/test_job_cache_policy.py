"""hi.JobCache policy end to end, with the real file backend (hither-core + hither-cache).

Functions count their calls by appending to the file named by $JCP_CALLS, which is not an
argument, so it does not change the job hash.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import hither as hi
from hither.errors import ConfigError
from hither.testing.cache_conformance import assert_same_value

sys.path.insert(0, os.path.dirname(__file__))
from code_versions import same_version_other_code  # noqa: E402


def _count() -> int:
    with open(os.environ["JCP_CALLS"], "a") as f:
        f.write("x")
    with open(os.environ["JCP_CALLS"]) as f:
        return len(f.read())


@hi.function("jcp_square", "0.1.0")
def jcp_square(x: int) -> int:
    _count()
    print(f"squaring {x}")
    return x * x


@hi.function("jcp_calls", "0.1.0")
def jcp_calls(x: int) -> int:
    """Returns how many times it has run: a rerun gives a new value."""
    return _count() * 100 + x


@hi.function("jcp_fail", "0.1.0")
def jcp_fail(x: int) -> int:
    n = _count()
    raise ValueError(f"bad x: {x} (run {n})" if x < 0 else f"bad x: {x}")


@hi.function("jcp_values", "0.1.0")
def jcp_values(n: int) -> tuple:
    _count()
    return (n, (n + 1, [n + 2]), np.arange(n, dtype=np.int16),
            {"m": np.eye(n, dtype=np.float32), "big": np.ones(300_000)}, np.float32(2.5))


@hi.function("jcp_write_file", "0.1.0")
def jcp_write_file(text: str) -> hi.File:
    _count()
    path = Path(os.environ["JCP_OUT"]) / "out.txt"
    path.write_text(text)
    return hi.File(str(path))


@pytest.fixture(autouse=True)
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "calls.txt"
    path.write_text("")
    monkeypatch.setenv("JCP_CALLS", str(path))
    yield path
    hi.reset()


def n_calls() -> int:
    with open(os.environ["JCP_CALLS"]) as f:
        return len(f.read())


@pytest.fixture
def cache_path(tmp_path: Path) -> str:
    return str(tmp_path / "jc")


# ---------------------------------------------------------------------- hits
def test_hit_returns_the_stored_result_without_running(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):
        assert jcp_square.run(x=3).wait() == 9
        assert jcp_square.run(x=3).wait() == 9
        assert n_calls() == 1
        assert jcp_square.run(x=4).wait() == 16  # other arguments: other job
        assert n_calls() == 2
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):  # a new cache object, same folder
        assert jcp_square.run(x=3).wait() == 9
    assert n_calls() == 2


def test_hit_keeps_runtime_info(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):
        j1 = jcp_square.run(x=5)
        j1.wait()
        j2 = jcp_square.run(x=5)
        assert j2.wait() == 25
    ri1, ri2 = j1.get_runtime_info(), j2.get_runtime_info()
    assert ri1.cached is False and ri2.cached is True
    assert "squaring 5" in ri2.stdout and ri2.stdout == ri1.stdout
    assert ri2.start_time == ri1.start_time and ri2.end_time == ri1.end_time
    assert ri2.host == ri1.host and ri2.status == hi.JobStatus.FINISHED


def test_tuples_stay_tuples_and_arrays_keep_dtype(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):
        first = jcp_values.run(n=3).wait()
        hit = jcp_values.run(n=3).wait()
    assert n_calls() == 1
    assert_same_value(hit, first)
    assert type(hit) is tuple and type(hit[1]) is tuple and type(hit[1][1]) is list
    assert hit[2].dtype == np.int16 and hit[3]["m"].dtype == np.float32


def test_a_plain_call_never_uses_the_cache(cache_path: str) -> None:
    jc = hi.JobCache(path=cache_path)
    with hi.Config(job_cache=jc):
        assert jcp_square(6) == 36
        assert jcp_square(x=6) == 36
        assert list(jc.backend.iter_hashes()) == []
        jcp_square.run(x=6).wait()  # stored now...
        assert jcp_square(6) == 36  # ...and a plain call still runs
    assert n_calls() == 4


def test_without_a_job_cache_nothing_is_cached() -> None:
    jcp_square.run(x=7).wait()
    jcp_square.run(x=7).wait()
    assert n_calls() == 2


# ---------------------------------------------------------------------- force_run
def test_force_run_in_config_reruns_and_restores(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):
        assert jcp_calls.run(x=1).wait() == 101
        with hi.Config(force_run=True):
            assert jcp_calls.run(x=1).wait() == 201
        assert jcp_calls.run(x=1).wait() == 201  # the rerun's result was stored
    assert n_calls() == 2


def test_force_run_in_job_cache_reruns_and_restores(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path, force_run=True)):
        assert jcp_calls.run(x=2).wait() == 102
        assert jcp_calls.run(x=2).wait() == 202
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):
        assert jcp_calls.run(x=2).wait() == 202
    assert n_calls() == 2


# ---------------------------------------------------------------------- failures
def test_failures_are_not_cached_by_default(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):
        for _ in range(2):
            with pytest.raises(ValueError, match="bad x: 3"):
                jcp_fail.run(x=3).wait()
    assert n_calls() == 2


def test_cache_failing_returns_the_cached_error(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path, cache_failing=True)):
        with pytest.raises(ValueError) as first:
            jcp_fail.run(x=-1).wait()
        job = jcp_fail.run(x=-1)
        with pytest.raises(ValueError) as again:
            job.wait()
    assert n_calls() == 1
    assert type(again.value) is type(first.value) is ValueError
    assert str(again.value) == str(first.value) == "bad x: -1 (run 1)"
    assert job.get_runtime_info().cached is True
    assert job.get_status() == hi.JobStatus.ERROR


def test_rerun_failing_reruns_a_cached_failure(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(path=cache_path, cache_failing=True)):
        with pytest.raises(ValueError, match=r"\(run 1\)"):
            jcp_fail.run(x=-2).wait()
    with hi.Config(job_cache=hi.JobCache(path=cache_path, cache_failing=True, rerun_failing=True)):
        with pytest.raises(ValueError, match=r"\(run 2\)"):
            jcp_fail.run(x=-2).wait()
    with hi.Config(job_cache=hi.JobCache(path=cache_path, cache_failing=True)):
        with pytest.raises(ValueError, match=r"\(run 2\)"):  # the rerun's failure was stored
            jcp_fail.run(x=-2).wait()
    assert n_calls() == 2


# ---------------------------------------------------------------------- files
def test_cached_result_whose_file_is_gone_is_a_miss(cache_path: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A returned File's content is stored when the File is made: deleting its source keeps
    the cache hit; removing the stored content (e.g. ``hither-store prune``) makes a miss."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("JCP_OUT", str(out))
    # a content store of this test only
    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "store"))
    from hither.content.stores import set_default_store

    def remove_stored(f: hi.File) -> None:
        blob = f.resolve()
        assert blob.startswith(str(tmp_path / "store"))
        os.chmod(blob, 0o644)
        os.remove(blob)

    set_default_store(None)
    try:
        with hi.Config(job_cache=hi.JobCache(path=cache_path)):
            f1 = jcp_write_file.run(text="hello").wait()
            f2 = jcp_write_file.run(text="hello").wait()
            assert n_calls() == 1 and f2 == f1 and f2.read_text() == "hello"
            (out / "out.txt").unlink()  # the source gone: the stored content remains
            f3 = jcp_write_file.run(text="hello").wait()
            assert n_calls() == 1 and f3 == f1 and f3.read_text() == "hello"
            remove_stored(f3)  # the stored content gone too: a miss
            f4 = jcp_write_file.run(text="hello").wait()
            assert n_calls() == 2 and f4.read_text() == "hello"
            (out / "out.txt").write_text("changed")  # same path, other content
            remove_stored(f4)
            f5 = jcp_write_file.run(text="hello").wait()
            assert n_calls() == 3 and f5.read_text() == "hello"
    finally:
        set_default_store(None)


# ---------------------------------------------------------------------- code changes
def test_same_version_different_code_warns_or_misses_with_check_code(cache_path: str,
                                                                     tmp_path: Path) -> None:
    try:
        importlib.import_module("hither.outside.bundle")
    except ImportError:
        pytest.skip("hither-core has no code packaging yet (hither.outside.bundle): no code hash")
    old, new = same_version_other_code(tmp_path, "jcp_code")
    with hi.Config(job_cache=hi.JobCache(path=cache_path)):
        assert old.run(x=10).wait() == 11
        with pytest.warns(UserWarning, match="different code under the same version"):
            assert new.run(x=10).wait() == 11  # the cached result, with a warning
    with hi.Config(job_cache=hi.JobCache(path=cache_path, check_code=True)):
        assert new.run(x=10).wait() == 12  # a miss: the new code runs
        assert new.run(x=10).wait() == 12  # and its result is the entry now


# ---------------------------------------------------------------------- construction
@pytest.mark.parametrize("kwargs", [{}, {"path": "a", "use_tempdir": True},
                                    {"path": "a", "database": hi.Database()},
                                    {"use_tempdir": True, "database": hi.Database()}])
def test_job_cache_needs_exactly_one_location(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="exactly one of"):
        hi.JobCache(**kwargs)


def test_use_tempdir(cache_path: str) -> None:
    with hi.Config(job_cache=hi.JobCache(use_tempdir=True)):
        assert jcp_square.run(x=8).wait() == 64
        assert jcp_square.run(x=8).wait() == 64
    assert n_calls() == 1

"""What hi.JobCache records and reuses: only outcomes of the function (a timeout, a dead
worker or another error of hither's own is never replayed, even with cache_failing), and
check_code never passes an entry it cannot check (no code hash: a miss, with a warning)."""
from __future__ import annotations

import os
import sys
import time

import pytest

import hither as hi
from hither.errors import (DependencyFailedError, HitherError, JobCancelledException, JobError,
                           JobTimeoutError, WorkerDiedError)
from hither.models import CacheEntry, ErrorInfo, JobStatus, RuntimeInfo
from hither.values.grammar import job_hash

pytest.importorskip("hither_cache")
sys.path.insert(0, os.path.dirname(__file__))
import cache_outcome_funcs as cf  # noqa: E402
from code_versions import same_version_other_code  # noqa: E402


@pytest.fixture
def pjh():
    h = hi.ParallelJobHandler(num_workers=1)
    yield h
    h.shutdown(wait=False)
    hi.reset()


@pytest.mark.timeout(60)
def test_a_timeout_is_never_cached_and_the_job_reruns(tmp_path, pjh):
    jc = hi.JobCache(path=str(tmp_path / "jc"), cache_failing=True)
    with hi.Config(job_handler=pjh, job_cache=jc, job_timeout=0.3):
        with pytest.raises(JobTimeoutError):
            cf.co_sleep.run(seconds=1.0).wait(30)
    with hi.Config(job_handler=pjh, job_cache=jc, job_timeout=20):
        job = cf.co_sleep.run(seconds=1.0)
        assert job.wait(30) == 1.0  # issue 8: the recorded timeout was raised again
        assert not job.get_runtime_info().cached


@pytest.mark.timeout(60)
def test_a_dead_worker_is_never_cached(tmp_path, pjh):
    marker = str(tmp_path / "died-once")
    jc = hi.JobCache(path=str(tmp_path / "jc"), cache_failing=True)
    with hi.Config(job_handler=pjh, job_cache=jc, retry=False):  # no retry: the death ends it
        with pytest.raises(WorkerDiedError):
            cf.co_die_once.run(x=5, marker=marker).wait(30)
        assert cf.co_die_once.run(x=5, marker=marker).wait(30) == 5


def test_a_recorded_timeout_of_an_older_hither_is_a_miss(tmp_path):
    jc = hi.JobCache(path=str(tmp_path / "jc"), cache_failing=True)
    jc.backend.put(CacheEntry(
        job_hash=job_hash("co_add", "0.1.0", {"x": 1}), function_name="co_add",
        function_version="0.1.0", status=JobStatus.ERROR, created_at=time.time(),
        error=ErrorInfo(type_module="hither.errors", type_name="JobTimeoutError", message="t"),
        runtime_info=RuntimeInfo(status=JobStatus.ERROR)))
    with hi.Config(job_cache=jc):
        assert cf.co_add.run(x=1).wait() == 2


@pytest.mark.parametrize("exc,recorded", [
    (ValueError("bad"), True), (SystemExit(3), True), (JobCancelledException("c"), False),
    (JobTimeoutError("t"), False), (WorkerDiedError("w"), False), (DependencyFailedError("d"), False),
    (HitherError("h"), False), (KeyboardInterrupt(), False), (MemoryError(), False),
    (JobError("x", remote_type="mymod.MyError"), True),
    (JobError("x", remote_type="hither.errors.WorkerDiedError"), False),
])
def test_only_errors_of_the_function_are_results(exc, recorded):
    from hither.jobs.cache_policy import _is_function_error

    assert _is_function_error(exc) is recorded
    t = type(exc)
    assert _is_function_error(t.__module__, t.__qualname__) is recorded or t is JobError


def test_check_code_misses_an_entry_recorded_without_a_code_hash(tmp_path, monkeypatch):
    import hither.jobs.cache_policy as policy

    old, new = same_version_other_code(tmp_path, "co_code")
    cache = str(tmp_path / "jc")
    monkeypatch.setattr(policy, "_code_hash", lambda job: None)  # e.g. an older hither's entry
    with hi.Config(job_cache=hi.JobCache(path=cache)):
        assert old.run(x=10).wait() == 11
    monkeypatch.undo()
    with hi.Config(job_cache=hi.JobCache(path=cache, check_code=True)):
        with pytest.warns(UserWarning, match="recorded without a code identity"):
            assert new.run(x=10).wait() == 12  # issue 8: the stale 11 was served
        assert new.run(x=10).wait() == 12


def test_check_code_checks_a_function_without_a_source_file(tmp_path):
    # issue 19: a function with no source file (exec'd, a notebook's) has a code identity
    # too (its bytecode and constants), so check_code can check it
    ns: dict = {"hi": hi, "calls": []}
    exec("@hi.function('co_nosrc', '0.1.0')\ndef co_nosrc(x):\n    calls.append(x)\n    return x\n", ns)
    fn = ns["co_nosrc"]
    cache = str(tmp_path / "jc")
    with hi.Config(job_cache=hi.JobCache(path=cache, check_code=True)):
        assert fn.run(x=1).wait() == 1
        assert fn.run(x=1).wait() == 1
        assert ns["calls"] == [1]  # the second was a checked hit
    with hi.Config(job_cache=hi.JobCache(path=cache)):
        assert fn.run(x=1).wait() == 1
        assert ns["calls"] == [1]

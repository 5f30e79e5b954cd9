"""Retries (``hi.Retry``) on real handlers: a worker killed on the first attempt only, the
job's own errors retried only when asked, a cancel during the backoff, options checked."""
from __future__ import annotations

import importlib.util
import os
import time

import pytest

import hither as hi
from hither.errors import ConfigError, JobCancelledException, WorkerDiedError

from fault_funcs import fault_die_once, fault_raise_once


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_worker_killed_on_the_first_attempt_is_retried_and_succeeds(make_pjh, tmp_path, how):
    marker = str(tmp_path / "marker")
    with hi.Config(job_handler=make_pjh(1), retry=hi.Retry(backoff=0.1)):
        job = fault_die_once.run(marker=marker, how=how)
        pid = job.wait(30)
    ri = job.get_runtime_info()
    assert ri.attempts == 2 and pid != os.getpid()
    assert len(ri.attempt_errors) == 1 and "WorkerDiedError" in ri.attempt_errors[0]
    assert "attempt 1" in ri.attempt_errors[0]


@pytest.mark.timeout(60)
def test_by_default_a_dead_worker_is_retried_twice_then_fails(make_pjh, tmp_path):
    from fault_funcs import fault_fork_then_die

    with hi.Config(job_handler=make_pjh(1), retry=hi.Retry(attempts=3, backoff=0.05)):
        job = fault_fork_then_die.run()
        with pytest.raises(WorkerDiedError):
            job.wait(40)
    ri = job.get_runtime_info()
    assert ri.attempts == 3 and len(ri.attempt_errors) == 2


@pytest.mark.timeout(60)
def test_the_default_policy_retries_a_dead_worker(make_pjh, tmp_path):
    marker = str(tmp_path / "marker")
    with hi.Config(job_handler=make_pjh(1)):  # no retry option at all
        job = fault_die_once.run(marker=marker)
        job.wait(30)
    assert job.get_runtime_info().attempts == 2


@pytest.mark.timeout(60)
def test_the_jobs_own_error_is_not_retried_by_default(handler, tmp_path):
    marker = str(tmp_path / "count")
    with hi.Config(job_handler=handler):
        job = fault_raise_once.run(marker=marker)
        with pytest.raises(ValueError, match="first run fails"):
            job.wait(30)
    assert open(marker).read() == "1" and job.get_runtime_info().attempts == 1


@pytest.mark.timeout(60)
def test_the_jobs_own_error_is_retried_with_retry_on(handler, tmp_path):
    marker = str(tmp_path / "count")
    with hi.Config(job_handler=handler, retry=hi.Retry(backoff=0.05, retry_on=(ValueError,))):
        assert fault_raise_once.run(marker=marker).wait(30) == 2


@pytest.mark.timeout(60)
def test_a_functions_own_policy_comes_before_the_configs(make_pjh, tmp_path):
    @hi.function("flaky_local", "0.1.0", retry=hi.Retry(attempts=2, backoff=0.05, retry_on=(KeyError,)))
    def flaky_local(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise KeyError("once")
        return "ok"

    with hi.Config(retry=False):
        job = flaky_local.run(marker=str(tmp_path / "m"))
        assert job.wait(30) == "ok"
    assert job.get_runtime_info().attempts == 2


@pytest.mark.timeout(60)
def test_no_retry_when_switched_off(make_pjh, tmp_path):
    marker = str(tmp_path / "marker")
    with hi.Config(job_handler=make_pjh(1), retry=False):
        job = fault_die_once.run(marker=marker)
        with pytest.raises(WorkerDiedError):
            job.wait(30)
    assert job.get_runtime_info().attempts == 1


@pytest.mark.timeout(60)
def test_cancel_during_the_backoff_cancels(make_pjh, tmp_path):
    marker = str(tmp_path / "marker")
    with hi.Config(job_handler=make_pjh(1), retry=hi.Retry(backoff=30)):
        job = fault_die_once.run(marker=marker)
        deadline = time.monotonic() + 20
        while job.get_runtime_info().attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.get_status() is hi.JobStatus.QUEUED and job.get_runtime_info().attempts == 2
        t0 = time.monotonic()
        assert job.cancel()
        with pytest.raises(JobCancelledException):
            job.wait(5)
        assert time.monotonic() - t0 < 2


@pytest.mark.timeout(60)
@pytest.mark.skipif(importlib.util.find_spec("hither_cache") is None,
                    reason="needs hither-cache (the file job cache)")
def test_a_failure_retried_then_failed_is_not_cached(make_pjh, tmp_path):
    marker = str(tmp_path / "count")
    cache = hi.JobCache(path=str(tmp_path / "cache"), cache_failing=True)
    with hi.Config(job_cache=cache, retry=hi.Retry(attempts=1, retry_on=(ValueError,))):
        with pytest.raises(ValueError):
            fault_raise_once.run(marker=marker).wait(30)
        assert fault_raise_once.run(marker=marker).wait(30) == 2  # ran again, not the recorded failure
    with hi.Config(job_cache=hi.JobCache(path=str(tmp_path / "c2"), cache_failing=True)):
        os.remove(marker)
        with pytest.raises(ValueError):
            fault_raise_once.run(marker=marker).wait(30)
        with pytest.raises(ValueError):  # not retryable: recorded, and reused
            fault_raise_once.run(marker=marker).wait(30)


@pytest.mark.parametrize("bad", [0, -1, "3", 2.5, hi.Config])
def test_a_bad_retry_option_is_refused_where_it_is_given(bad):
    with pytest.raises(ConfigError, match=r"hi.Config\(retry=...\) takes"):
        hi.Config(retry=bad)
    with pytest.raises(ConfigError, match=r"@hi.function\('g', '1', ...\)\(retry=...\) takes"):
        hi.function("g", "1", retry=bad)


@pytest.mark.timeout(60)
def test_jobs_waiting_to_be_retried_cost_no_thread_each():
    import threading

    seen = set()  # the DefaultJobHandler runs jobs in this process

    @hi.function("flaky_many", "0.1.0")
    def flaky_many(i):
        if i not in seen:
            seen.add(i)
            raise KeyError(i)
        return i

    before = threading.active_count()
    with hi.Config(retry=hi.Retry(attempts=2, backoff=1.0, retry_on=(KeyError,))):
        jobs = [flaky_many.run(i=i) for i in range(50)]
        during = threading.active_count()
        assert all(j.get_status() is hi.JobStatus.QUEUED for j in jobs)
        assert [j.wait(30) for j in jobs] == list(range(50))
    assert during - before <= 3, f"{during - before} threads for 50 jobs in their backoff"
    assert all(j.get_runtime_info().attempts == 2 for j in jobs)

"""Pipelines, waiting, timeouts, cancellation, errors, worker deaths, runtime info, the
ParallelJobHandler's pool, and asyncio."""
import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import hither as hi
from hither.testing.processes import wait_for_file
import core_funcs as cf
from core_funcs import add, identity, sleep_then


def _pid_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _cancel_ends_it_at_once(job):
    """Cancel ``job``: ``cancel()`` says it took, and ``wait`` raises JobCancelledException
    within a second."""
    t0 = time.monotonic()
    assert job.cancel() is True
    with pytest.raises(hi.JobCancelledException):
        job.wait(timeout=5)
    assert time.monotonic() - t0 < 1


# ----------------------------------------------------------------- pipelines
def test_jobs_nested_anywhere_are_dependencies(handler):
    with hi.Config(job_handler=handler):
        a = sleep_then.run(t=0.3, x=1)
        b = sleep_then.run(t=0.1, x=2)
        c = identity.run(x={"list": [a, b, 3], "dict": {"k": a}, "tuple": (b,)})
        assert sorted(d.id for d in c.dependencies) == sorted([a.id, b.id])
        r = c.wait(timeout=60)
    assert r == {"list": [1, 2, 3], "dict": {"k": 1}, "tuple": (2,)}
    assert type(r["tuple"]) is tuple


def test_dependent_runs_after_inputs_ready(make_pjh):
    jh = make_pjh(2)
    with hi.Config(job_handler=jh):
        a = sleep_then.run(t=0.5, x=np.arange(3))
        b = add.run(x=a, y=a)
        assert b.get_status() == hi.JobStatus.PENDING
        assert not b.is_done()
    r = b.wait(timeout=60)
    assert np.array_equal(r, [0, 2, 4])
    assert b.get_runtime_info().start_time >= a.get_runtime_info().end_time - 0.05


def test_list_of_jobs_as_argument(handler):
    with hi.Config(job_handler=handler):
        parts = [cf.sqr_with_delay.run(x=i) for i in range(5)]
        total = identity.run(x=parts)
        assert total.wait(timeout=60) == [0, 1, 4, 9, 16]


def test_upstream_failure_fails_dependent_with_dependency_failed_error(handler):
    with hi.Config(job_handler=handler):
        bad = cf.fail_after.run(t=0.2, msg="upstream broke")
        mid = add.run(x=bad, y=1)
        last = identity.run(x=[mid])
        with pytest.raises(ValueError, match="upstream broke"):
            bad.wait(timeout=30)
        with pytest.raises(hi.DependencyFailedError) as ei:
            mid.wait(timeout=30)
        msg = str(ei.value)
        assert "fail_after" in msg and bad.id in msg
        assert "upstream broke" in msg
        with pytest.raises(hi.DependencyFailedError) as ei2:
            last.wait(timeout=30)  # a chain of failures, never a hang
        assert "add" in str(ei2.value) and mid.id in str(ei2.value)
    assert mid.get_status() == hi.JobStatus.ERROR


def test_dependent_of_already_failed_job_fails_at_once(handler):
    with hi.Config(job_handler=handler):
        bad = cf.fail_value_error.run(msg="early")
        with pytest.raises(ValueError):
            bad.wait(timeout=30)
        dep = add.run(x=bad, y=1)
        with pytest.raises(hi.DependencyFailedError, match="fail_value_error"):
            dep.wait(timeout=30)


def test_handlers_mix_in_one_pipeline(make_pjh):
    jh = make_pjh(2)
    a = add.run(x=1, y=2)                      # DefaultJobHandler
    with hi.Config(job_handler=jh):
        b = cf.sqr_with_delay.run(x=a, delay=0.2)  # ParallelJobHandler
    c = add.run(x=b, y=100)                    # DefaultJobHandler again, after a worker's job
    assert c.wait(timeout=60) == 109
    assert b.get_runtime_info().pid != os.getpid()
    assert a.get_runtime_info().pid == c.get_runtime_info().pid == os.getpid()
    assert a.handler is c.handler and b.handler is jh


# ----------------------------------------------------------------- waiting and timeouts
def test_wait_timeout_raises_builtin_timeouterror_and_job_goes_on(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        job = sleep_then.run(t=1.0, x="done")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as ei:
        job.wait(timeout=0.2)
    assert time.monotonic() - t0 < 0.9
    assert not isinstance(ei.value, hi.JobTimeoutError)
    assert not isinstance(ei.value, hi.HitherError)
    assert not job.is_done()
    assert job.wait(timeout=30) == "done"
    assert job.get_status() == hi.JobStatus.FINISHED


def test_get_result_before_finish_raises(make_pjh):
    with hi.Config(job_handler=make_pjh(1)):
        job = sleep_then.run(t=0.5)
    with pytest.raises(hi.errors.JobNotFinishedError):
        job.get_result()
    job.wait(timeout=30)


def test_job_timeout_kills_long_job(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh, job_timeout=0.5):
        job = sleep_then.run(t=6, x=1)
    t0 = time.monotonic()
    with pytest.raises(hi.JobTimeoutError) as ei:
        job.wait(timeout=5)
    took = time.monotonic() - t0
    assert took < 4, f"job_timeout=0.5 took {took:.1f} s to act"
    # as designed: a JobTimeoutError is a TimeoutError and a HitherError (a wait timeout is neither
    # a JobTimeoutError nor a HitherError: see test_wait_timeout_raises_builtin_timeouterror...)
    assert isinstance(ei.value, TimeoutError) and isinstance(ei.value, hi.HitherError)
    assert "job_timeout" in str(ei.value)
    assert job.get_status() == hi.JobStatus.ERROR
    with hi.Config(job_handler=jh):  # the handler goes on
        assert add.run(x=1, y=1).wait(timeout=30) == 2


def test_job_timeout_applies_to_job_started_after_another(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        assert add.run(x=1, y=1).wait(timeout=30) == 2
    with hi.Config(job_handler=jh, job_timeout=0.5):
        first = sleep_then.run(t=0.1, x=1)
        job = sleep_then.run(t=6, x=2)
    assert first.wait(timeout=30) == 1
    with pytest.raises(hi.JobTimeoutError):
        job.wait(timeout=5)


def test_job_timeout_not_reached_is_fine(make_pjh):
    with hi.Config(job_handler=make_pjh(1), job_timeout=20):
        assert sleep_then.run(t=0.1, x=5).wait(timeout=30) == 5


def test_default_handler_refuses_job_timeout_at_run():
    with hi.Config(job_timeout=0.5):
        with pytest.raises(hi.errors.ConfigError) as ei:
            add.run(x=1, y=2)
    assert "ParallelJobHandler" in str(ei.value)


# ----------------------------------------------------------------- cancel
def test_cancel_queued_job(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        running = sleep_then.run(t=2, x="r")
        # big arguments: not prefetched to the busy worker, so this one waits in the queue
        queued = identity.run(x=np.zeros(200_000))
        queued_small = add.run(x=1, y=2)  # small: may be prefetched to the busy worker
    time.sleep(0.2)
    assert queued.get_status() == hi.JobStatus.QUEUED
    t0 = time.monotonic()
    assert queued.cancel() is True
    assert queued_small.cancel() is True
    with pytest.raises(hi.JobCancelledException):
        queued.wait(timeout=5)
    with pytest.raises(hi.JobCancelledException):
        queued_small.wait(timeout=5)
    assert time.monotonic() - t0 < 1
    assert queued.get_status() == hi.JobStatus.CANCELLED
    assert running.wait(timeout=30) == "r"  # the running job was left alone
    with hi.Config(job_handler=jh):
        assert add.run(x=2, y=2).wait(timeout=30) == 4
    assert queued.cancel() is False  # already ended


def test_cancel_running_job_kills_and_replaces_worker(make_pjh, tmp_path):
    jh = make_pjh(1)
    pidfile = str(tmp_path / "pid")
    with hi.Config(job_handler=jh):
        job = cf.pid_then_sleep.run(path=pidfile, t=30)
    pid = int(wait_for_file(pidfile))
    assert pid != os.getpid()
    assert job.get_status() == hi.JobStatus.RUNNING
    _cancel_ends_it_at_once(job)
    assert _pid_gone(pid)
    with hi.Config(job_handler=jh):
        nxt = cf.pid_of.run()
        assert nxt.wait(timeout=30) not in (pid, os.getpid())


def test_worker_replaced_many_times_keeps_working(make_pjh, tmp_path):
    """Several cancels of running jobs in a row on one handler (each replaces the worker)."""
    jh = make_pjh(1)
    for i in range(4):
        pidfile = str(tmp_path / f"pid{i}")
        with hi.Config(job_handler=jh):
            job = cf.pid_then_sleep.run(path=pidfile, t=30)
        wait_for_file(pidfile)
        job.cancel()
        with pytest.raises(hi.JobCancelledException):
            job.wait(timeout=5)
        with hi.Config(job_handler=jh):
            assert add.run(x=i, y=1).wait(timeout=10) == i + 1, f"round {i}"


def test_cancel_pending_job_waiting_on_input(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        up = sleep_then.run(t=1.0, x=1)
        dep = add.run(x=up, y=1)
    assert dep.get_status() == hi.JobStatus.PENDING
    _cancel_ends_it_at_once(dep)
    assert up.wait(timeout=30) == 1
    time.sleep(0.2)
    assert dep.get_status() == hi.JobStatus.CANCELLED  # not revived when its input finished
    # and a job depending on a cancelled job fails with DependencyFailedError
    dep2 = add.run(x=dep, y=1)
    with pytest.raises(hi.DependencyFailedError, match="cancelled"):
        dep2.wait(timeout=10)


def test_default_handler_cancel_queued_job_but_not_running_one(make_pjh):
    """Jobs whose inputs ran elsewhere run on the DefaultJobHandler's own thread, one at a
    time: a queued one can be cancelled, the running one cannot (it is in this process)."""
    gate = threading.Event()

    @hi.function('core_gate_wait', '0.1.0')
    def core_gate_wait(x):
        gate.wait(20)
        return x

    jh = make_pjh(2)
    with hi.Config(job_handler=jh):
        in1 = add.run(x=1, y=0)
        in2 = sleep_then.run(t=1.0, x=2)
    running = core_gate_wait.run(x=in1)     # default handler, after in1 (parallel)
    in1.wait(timeout=30)
    deadline = time.monotonic() + 10
    while running.get_status() != hi.JobStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    queued = core_gate_wait.run(x=in2)      # behind the running one on the handler's thread
    assert queued.get_status() == hi.JobStatus.PENDING
    in2.wait(timeout=30)
    deadline = time.monotonic() + 10
    while queued.get_status() != hi.JobStatus.QUEUED:
        assert time.monotonic() < deadline, queued.get_status()
        time.sleep(0.02)
    assert running.cancel() is False
    _cancel_ends_it_at_once(queued)
    gate.set()
    assert running.wait(timeout=30) == 1
    assert queued.get_status() == hi.JobStatus.CANCELLED


# ----------------------------------------------------------------- exceptions
def test_exception_type_message_and_remote_traceback(handler):
    with hi.Config(job_handler=handler):
        job = cf.fail_value_error.run(msg="bad value 17")
        with pytest.raises(ValueError) as ei:
            job.wait(timeout=60)
    exc = ei.value
    assert type(exc) is ValueError
    assert str(exc) == "bad value 17"
    tb = exc.remote_traceback
    assert "fail_value_error" in tb and "raise ValueError(msg)" in tb
    assert "core_funcs.py" in tb
    assert job.get_status() == hi.JobStatus.ERROR
    assert job.get_error() is not None


def test_custom_exception_class_comes_back(handler):
    with hi.Config(job_handler=handler):
        job = cf.fail_custom.run(msg="custom trouble")
        with pytest.raises(cf.CustomError) as ei:
            job.wait(timeout=60)
    assert type(ei.value) is cf.CustomError
    assert "custom trouble" in str(ei.value)
    assert "raise CustomError(msg)" in ei.value.remote_traceback


def test_unpicklable_exception_still_comes_back_with_message(handler):
    with hi.Config(job_handler=handler):
        job = cf.fail_unpicklable.run()
        with pytest.raises(Exception) as ei:
            job.wait(timeout=60)
    assert "unpicklable error with 1 and 2" in str(ei.value)
    assert isinstance(ei.value, (cf.UnpicklableError, hi.JobError))
    if isinstance(ei.value, hi.JobError):
        assert "UnpicklableError" in ei.value.remote_type
    assert "fail_unpicklable" in ei.value.remote_traceback


def test_exception_in_local_function_in_worker(make_pjh):
    @hi.function('core_local_raiser', '0.1.0')
    def core_local_raiser(n):
        raise KeyError(f"missing {n}")

    with hi.Config(job_handler=make_pjh(1)):
        job = core_local_raiser.run(n=3)
        with pytest.raises(KeyError, match="missing 3"):
            job.wait(timeout=60)
    assert "core_local_raiser" in job.get_error().remote_traceback


# ----------------------------------------------------------------- worker deaths
@pytest.mark.parametrize("fn,kwargs,words", [
    (cf.die_exit, {"code": 3}, ["code 3"]),
    (cf.die_segfault, {}, ["segmentation fault", "SIGSEGV"]),
    (cf.die_sigkill, {}, ["SIGKILL"]),
])
def test_worker_death_fails_job_and_handler_goes_on(make_pjh, fn, kwargs, words):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh, retry=False):  # one death, its own message (no retry)
        first_pid = cf.pid_of.run().wait(timeout=30)
        job = fn.run(**kwargs)
        with pytest.raises(hi.WorkerDiedError) as ei:
            job.wait(timeout=30)
        msg = str(ei.value)
        for w in words:
            assert w in msg, msg
        assert str(first_pid) in msg and fn.name in msg
        assert job.get_status() == hi.JobStatus.ERROR
        after = [cf.pid_of.run() for _ in range(3)]
        pids = {j.wait(timeout=30) for j in after}
    assert first_pid not in pids and os.getpid() not in pids
    assert _pid_gone(first_pid)


def test_worker_deaths_in_a_row_on_one_handler(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        for i, (fn, kw) in enumerate([(cf.die_exit, {"code": 3}), (cf.die_sigkill, {}),
                                      (cf.die_exit, {"code": 4}), (cf.die_segfault, {})]):
            with pytest.raises(hi.WorkerDiedError):
                fn.run(**kw).wait(timeout=15)
            assert add.run(x=i, y=1).wait(timeout=15) == i + 1, f"round {i}"


def test_worker_death_does_not_affect_other_workers_jobs(make_pjh):
    jh = make_pjh(2)
    with hi.Config(job_handler=jh):
        slow = sleep_then.run(t=1.0, x="survivor")
        time.sleep(0.2)
        dead = cf.die_exit.run(code=5)
        with pytest.raises(hi.WorkerDiedError, match="code 5"):
            dead.wait(timeout=30)
        assert slow.wait(timeout=30) == "survivor"


# ----------------------------------------------------------------- runtime info
def test_runtime_info_default_handler(capfd):
    job = cf.chatty.run(out="to-stdout-123", err="to-stderr-456", t=0.2)
    assert job.wait() == os.getpid()
    ri = job.get_runtime_info()
    assert isinstance(ri, hi.RuntimeInfo)
    assert "to-stdout-123" in ri.stdout and "to-stderr-456" not in ri.stdout
    assert "to-stderr-456" in ri.stderr
    assert ri.status == hi.JobStatus.FINISHED
    assert ri.host == socket.gethostname()
    assert ri.pid == os.getpid()
    assert ri.start_time <= ri.end_time
    assert 0.15 < ri.elapsed < 30
    assert abs(ri.start_time - time.time()) < 60
    assert ri.handler == "default"
    out, err = capfd.readouterr()
    # still shown on the console (this process's fd 1 and 2)
    assert "to-stdout-123" in out
    assert "to-stderr-456" in err


def test_runtime_info_parallel_handler(make_pjh, capfd, monkeypatch):
    # as on a normal console: workers inherit the environment, and PYTHONUNBUFFERED (set in
    # some shells and CI systems) would hide buffering problems
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    with hi.Config(job_handler=make_pjh(1)):
        job = cf.chatty.run(out="par-stdout-789", err="par-stderr-000", t=0.2)
        wpid = job.wait(timeout=60)
    ri = job.get_runtime_info()
    assert ri.pid == wpid != os.getpid()
    assert "par-stdout-789" in ri.stdout and "par-stderr-000" in ri.stderr
    assert ri.status == hi.JobStatus.FINISHED
    assert ri.host == socket.gethostname()
    assert 0.15 < ri.elapsed < 30
    assert ri.handler == "parallel"
    # what the worker printed reaches this process's console (fd 1 and 2) while the worker
    # lives on, not only when it exits
    deadline = time.monotonic() + 5
    out = err = ""
    while time.monotonic() < deadline:
        o, e = capfd.readouterr()
        out, err = out + o, err + e
        if "par-stdout-789" in out and "par-stderr-000" in err:
            break
        time.sleep(0.05)
    assert "par-stdout-789" in out and "par-stderr-000" in err


def test_runtime_info_of_failed_job(handler):
    with hi.Config(job_handler=handler):
        job = cf.fail_value_error.run(msg="x")
        with pytest.raises(ValueError):
            job.wait(timeout=60)
    ri = job.get_runtime_info()
    assert ri.status == hi.JobStatus.ERROR
    assert ri.start_time is not None and ri.end_time is not None


def test_status_progression(make_pjh):
    with hi.Config(job_handler=make_pjh(1)):
        a = sleep_then.run(t=0.5, x=1)
        b = add.run(x=a, y=1)
        time.sleep(0.2)
        assert a.get_status() == hi.JobStatus.RUNNING
        assert b.get_status() == hi.JobStatus.PENDING
        assert b.wait(timeout=30) == 2
    assert a.get_status() == b.get_status() == hi.JobStatus.FINISHED


def test_print_console_out(capsys, handler):
    with hi.Config(job_handler=handler):
        job = cf.chatty.run(out="pco-out-line", err="pco-err-line")
        job.wait(timeout=60)
    capsys.readouterr()
    job.print_console_out()
    out = capsys.readouterr().out
    assert "pco-out-line" in out and "pco-err-line" in out
    assert out.index("pco-out-line") < out.index("pco-err-line")


# ----------------------------------------------------------------- the parallel pool
def test_parallel_handler_reuses_workers(make_pjh):
    with hi.Config(job_handler=make_pjh(2)):
        jobs = [cf.pid_of.run(x=i) for i in range(20)]
        pids = {j.wait(timeout=60) for j in jobs}
    assert 1 <= len(pids) <= 2
    assert os.getpid() not in pids


def test_parallel_handler_submit_from_threads(make_pjh):
    jh = make_pjh(2)
    results = {}
    errors = []

    def work(k):
        try:
            with hi.Config(job_handler=jh):
                jobs = [(i, add.run(x=i, y=1000 * k)) for i in range(8)]
            results[k] = [(i, j.wait(timeout=60)) for i, j in jobs]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    for k in range(4):
        assert results[k] == [(i, i + 1000 * k) for i in range(8)]


def test_large_array_round_trip(make_pjh):
    a = np.arange(50 * 1024 * 1024 // 8, dtype=np.float64)  # 50 MB
    with hi.Config(job_handler=make_pjh(1)):
        back = identity.run(x=a).wait(timeout=120)
        plus = cf.plus_one.run(a=a).wait(timeout=120)
    assert back.shape == a.shape and back.dtype == a.dtype
    assert np.array_equal(back, a)
    assert np.array_equal(plus, a + 1)
    assert back.flags.writeable and plus.flags.writeable
    back[0] = -1.0
    plus[-1] = -2.0
    assert back[0] == -1.0 and plus[-1] == -2.0
    assert a[0] == 0.0  # the caller's array is untouched


#: dtypes pickle protocol 5 alone brings back in native byte order (datetime and timedelta
#: arrays: numpy drops their byte order), and their neighbours that it keeps
BYTE_ORDER_DTYPES = [np.dtype(t) for t in (">M8[ns]", ">m8", ">m8[ms]", ">f8", ">i4", "<M8[us]")] + [
    np.dtype([("t", ">M8[ns]"), ("x", ">f8"), ("n", ">i4", (2,))]),
    np.dtype([("a", "u1"), ("d", ">m8[s]")], align=True),
]


@pytest.mark.parametrize("size", [5, 300_000], ids=["in-band", "shared-memory"])
def test_parallel_worker_sees_exactly_the_dtype_it_was_given(make_pjh, size):
    arrays = [np.zeros(size, dt) if dt.names else
              np.arange(size, dtype=dt.byteorder.replace("=", "") + "i8").view(dt) if dt.kind in "mM" else
              np.arange(size).astype(dt) for dt in BYTE_ORDER_DTYPES]
    assert [a.dtype.descr for a in arrays] == [dt.descr for dt in BYTE_ORDER_DTYPES]
    arrays.append(np.arange(3 * size).astype(">f8").reshape(3, size)[:, ::2])  # strided
    with hi.Config(job_handler=make_pjh(1)):
        seen, back = cf.dtypes_seen.run(x=arrays).wait(timeout=120)
    assert seen == [str(a.dtype.descr) for a in arrays]  # inside the job
    from hither.testing.value_strategies import assert_exact

    assert_exact(back, arrays)  # and on the way back (dtype, shape, every meaningful byte)


_PRINTING_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import hither as hi
from hither.testing.processes import wait_for_file
import core_funcs as cf
jh = hi.ParallelJobHandler(num_workers=2)
with hi.Config(job_handler=jh):
    jobs = [cf.print_lines.run(tag="job%d" % k, n=3000) for k in range(4)]
assert [j.wait(60) for j in jobs] == [3000] * 4
jh.shutdown()
"""


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
def test_workers_sharing_a_console_never_break_each_others_lines(tmp_path, unbuffered):
    """Two workers print at once to the same pipe: lines may come in any order, but each
    whole (print writes text and newline separately; unbuffered, they used to interleave)."""
    script = _PRINTING_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    broken = [ln for ln in lines if not re.fullmatch(r"job\d line \d+ x{40}", ln)]
    assert not broken, f"{len(broken)} broken lines, e.g. {broken[:3]}"
    assert sorted(lines) == sorted(f"job{k} line {i} " + "x" * 40 for k in range(4) for i in range(3000))


def test_parallel_handler_rejects_bad_num_workers():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(hi.errors.ConfigError):
            hi.ParallelJobHandler(num_workers=bad)


def test_local_function_runs_in_worker_by_value(make_pjh):
    factor = 7

    @hi.function('core_local_times', '0.1.0')
    def core_local_times(x):
        return [x * factor, os.getpid()]

    with hi.Config(job_handler=make_pjh(1)):
        v, pid = core_local_times.run(x=6).wait(timeout=60)
    assert v == 42 and pid != os.getpid()


# ----------------------------------------------------------------- asyncio
def test_await_job_does_not_block_the_loop(make_pjh):
    jh = make_pjh(1)

    async def main():
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                await asyncio.sleep(0.05)
                ticks += 1

        t = asyncio.create_task(ticker())
        with hi.Config(job_handler=jh):
            job = sleep_then.run(t=0.5, x="awaited")
        r = await job
        stop = True
        await t
        return r, ticks

    r, ticks = asyncio.run(main())
    assert r == "awaited"
    assert ticks >= 5, f"the loop ticked only {ticks} times while awaiting a 0.5 s job"


def test_asyncio_gather_of_jobs(make_pjh):
    jh = make_pjh(2)

    async def main():
        with hi.Config(job_handler=jh):
            jobs = [cf.sqr_with_delay.run(x=i, delay=0.1) for i in range(5)]
        done_first = add.run(x=1, y=1)  # already finished (default handler)
        return await asyncio.gather(*jobs, done_first)

    assert asyncio.run(main()) == [0, 1, 4, 9, 16, 2]


def test_await_failing_job_raises(make_pjh):
    async def main():
        with hi.Config(job_handler=make_pjh(1)):
            job = cf.fail_value_error.run(msg="async failure")
        await job

    with pytest.raises(ValueError, match="async failure"):
        asyncio.run(main())


# ----------------------------------------------------------------- more
def test_positional_arguments_bind_to_names():
    j = add.run(1, 2)
    assert j.wait() == 3
    assert j.kwargs == {"x": 1, "y": 2}
    assert j.job_hash == add.run(x=1, y=2).job_hash


def test_console_capture_does_not_mix_threads(capfd):
    """A job running inline in one thread captures only its own thread's output."""
    stop = threading.Event()

    def noisy():
        while not stop.is_set():
            print("OTHER-THREAD-NOISE")
            time.sleep(0.005)

    t = threading.Thread(target=noisy)
    t.start()
    try:
        job = cf.chatty.run(out="mine-only", err="mine-err", t=0.2)
    finally:
        stop.set()
        t.join(10)
    ri = job.get_runtime_info()
    assert "mine-only" in ri.stdout
    assert "OTHER-THREAD-NOISE" not in ri.stdout
    assert "OTHER-THREAD-NOISE" in capfd.readouterr().out  # the other thread still printed


def test_local_function_traceback_names_its_file(make_pjh):
    @hi.function('core_local_tb', '0.1.0')
    def core_local_tb():
        raise RuntimeError("local tb")

    with hi.Config(job_handler=make_pjh(1)):
        job = core_local_tb.run()
        with pytest.raises(RuntimeError, match="local tb"):
            job.wait(timeout=30)
    tb = job.get_error().remote_traceback
    assert os.path.basename(__file__) in tb and 'raise RuntimeError("local tb")' in tb


def test_argument_buffers_are_cleaned_up(make_pjh, tmp_path, monkeypatch):
    import hither.local.transfer as transfer

    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(transfer, "SHM_DIR", str(shm))  # where this process puts argument buffers
    a = np.arange(3 * 1024 * 1024 // 8, dtype=np.float64)  # 3 MB: out of band
    with hi.Config(job_handler=make_pjh(1)):
        assert np.array_equal(cf.plus_one.run(a=a).wait(timeout=60), a + 1)
        failing = cf.fail_after.run(t=0, msg=str(a.size))
        with pytest.raises(ValueError):
            failing.wait(timeout=60)
        slow = sleep_then.run(t=30, x=a)
        time.sleep(0.3)
        slow.cancel()
    assert list(shm.iterdir()) == []


class _MemBackend(hi.CacheBackend):
    name = "core-test-mem"

    def __init__(self):
        self.entries = {}

    def get(self, job_hash):
        return self.entries.get(job_hash)

    def put(self, entry):
        self.entries[entry.job_hash] = entry

    def delete(self, job_hash):
        return self.entries.pop(job_hash, None) is not None

    def iter_hashes(self):
        return iter(list(self.entries))


def test_job_cache_policy_with_both_handlers(handler, tmp_path):
    log = tmp_path / "runs.txt"
    cache = hi.JobCache(backend=_MemBackend())
    with hi.Config(job_handler=handler, job_cache=cache):
        first = cf.count_runs.run(path=str(log), x=3)
        assert first.wait(timeout=60) == [3, 6]
        second = cf.count_runs.run(path=str(log), x=3)
        assert second.wait(timeout=60) == [3, 6]
        assert second.get_runtime_info().cached is True
        assert first.get_runtime_info().cached is False
        with hi.Config(force_run=True):
            third = cf.count_runs.run(path=str(log), x=3)
            assert third.wait(timeout=60) == [3, 6]
        other = cf.count_runs.run(path=str(log), x=4)
        assert other.wait(timeout=60) == [4, 8]
    assert log.read_text().count("ran") == 3
    assert first.job_hash == second.job_hash == third.job_hash != other.job_hash


# ----------------------------------------------------------------- prefetched jobs (one deep per busy worker)
def test_cancel_prefetched_job_never_runs(make_pjh, tmp_path):
    log = tmp_path / "runs.txt"
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        running = sleep_then.run(t=1.0, x="r")
        time.sleep(0.2)
        pre = cf.count_runs.run(path=str(log), x=1)  # small: handed to the busy worker
    _cancel_ends_it_at_once(pre)
    assert running.wait(timeout=30) == "r"
    with hi.Config(job_handler=jh):
        assert cf.count_runs.run(path=str(log), x=2).wait(timeout=30) == [2, 4]
    assert log.read_text().count("ran") == 1  # only the second one ran


def test_job_timeout_counts_from_start_not_submit(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh, job_timeout=3.5):
        a = sleep_then.run(t=2.0, x="a")
        b = sleep_then.run(t=2.0, x="b")  # waits ~2 s for the worker, then runs 2 s
    assert a.wait(timeout=30) == "a"
    assert b.wait(timeout=30) == "b"


def _slow_worker_start(tmp_path, monkeypatch, body):
    """Workers started from now on run ``body`` (indented code, ``os`` and ``time``
    imported) at interpreter start-up, before they send Ready: a sitecustomize module."""
    (tmp_path / "sitecustomize.py").write_text(
        f"import os, time\nif os.environ.get('HITHER_IN_WORKER') == '1':\n    {body}\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def test_job_timeout_does_not_count_the_worker_start_up(make_pjh, tmp_path, monkeypatch):
    """A worker that takes 2 s to start (a slow file system, a loaded machine: Python and
    its imports) must not eat into a job_timeout of 1.5 s for a job that runs 0.3 s: the
    deadline counts from the worker's Ready message."""
    _slow_worker_start(tmp_path, monkeypatch, "time.sleep(2.0)")
    jh = make_pjh(1)
    t0 = time.monotonic()
    with hi.Config(job_handler=jh, job_timeout=1.5):
        a = sleep_then.run(t=0.3, x="a")
    assert a.wait(timeout=30) == "a"
    assert time.monotonic() - t0 > 2.0  # the slow start-up did happen


def test_a_worker_that_never_starts_ends_a_job_with_a_timeout(make_pjh, tmp_path, monkeypatch):
    """The job_timeout counts from the worker's Ready; a worker whose start-up hangs must
    still end the job (after the start-up grace), with an error saying so, never a hang."""
    _slow_worker_start(tmp_path, monkeypatch, "time.sleep(3600)")
    monkeypatch.setenv("HITHER_WORKER_START_GRACE", "1")
    jh = make_pjh(1)
    with hi.Config(job_handler=jh, job_timeout=0.5, retry=False):
        a = sleep_then.run(t=0.1, x="a")
    with pytest.raises(hi.WorkerDiedError, match="did not start within 1 s"):
        a.wait(timeout=30)


def test_a_hung_worker_start_up_is_bounded_without_a_job_timeout(make_pjh, tmp_path, monkeypatch):
    """The start-up grace belongs to the worker, not to the job's limit: with no
    job_timeout, a worker whose start-up hangs is killed after the grace and its job fails
    (no retry) instead of running for ever."""
    _slow_worker_start(tmp_path, monkeypatch, "time.sleep(3600)")
    monkeypatch.setenv("HITHER_WORKER_START_GRACE", "1.5")
    jh = make_pjh(1)
    t0 = time.monotonic()
    with hi.Config(job_handler=jh, retry=False):
        a = sleep_then.run(t=0.1, x="a")
    with pytest.raises(hi.WorkerDiedError, match=r"did not start within 1\.5 s"):
        a.wait(timeout=30)
    assert 1.0 < time.monotonic() - t0 < 20


def test_a_job_whose_worker_never_started_is_retried_on_a_fresh_worker(make_pjh, tmp_path,
                                                                      monkeypatch):
    """Under the default retry policy, the job of a worker that did not start within the
    grace runs again on a new worker (here the first start-up hangs, the next ones do not)."""
    marker = tmp_path / "hung-once"
    _slow_worker_start(tmp_path, monkeypatch,
                       f"if not os.path.exists({str(marker)!r}):\n"
                       f"        open({str(marker)!r}, 'w').close()\n        time.sleep(3600)")
    monkeypatch.setenv("HITHER_WORKER_START_GRACE", "4")  # the second start-up has 4 s
    jh = make_pjh(1)
    with hi.Config(job_handler=jh, retry=hi.Retry(attempts=2, backoff=0)):
        a = sleep_then.run(t=0.1, x="a")
    assert a.wait(timeout=30) == "a"
    info = a.get_runtime_info()
    assert info.attempts == 2 and "did not start within" in info.attempt_errors[0]


def test_an_idle_worker_that_never_started_is_replaced_when_a_job_comes(make_pjh, tmp_path,
                                                                        monkeypatch, caplog):
    """A pool's worker whose start-up hangs before any job came is killed after the grace
    (a warning says so); a later job gets a fresh worker."""
    marker = tmp_path / "hung-once"
    _slow_worker_start(tmp_path, monkeypatch,
                       f"if not os.path.exists({str(marker)!r}):\n"
                       f"        open({str(marker)!r}, 'w').close()\n        time.sleep(3600)")
    monkeypatch.setenv("HITHER_WORKER_START_GRACE", "4")
    with caplog.at_level("WARNING", logger="hither.local.parallel"):
        jh = make_pjh(1)
        deadline = time.monotonic() + 30
        while "did not start within 4 s" not in caplog.text:
            assert time.monotonic() < deadline, "the hung worker was never killed"
            time.sleep(0.1)
    with hi.Config(job_handler=jh, retry=False):
        assert sleep_then.run(t=0.1, x="a").wait(timeout=30) == "a"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", ""])
def test_a_bad_worker_start_grace_is_refused_naming_the_variable(monkeypatch, value):
    from hither.errors import ConfigError
    from hither.local.parallel import ParallelJobHandler

    monkeypatch.setenv("HITHER_WORKER_START_GRACE", value)
    if value == "":  # empty: the default
        ParallelJobHandler(num_workers=1).shutdown()
        return
    with pytest.raises(ConfigError, match="HITHER_WORKER_START_GRACE=.*positive"):
        ParallelJobHandler(num_workers=1)


@pytest.mark.parametrize("how", ["cancel", "death", "timeout"])
def test_job_behind_a_replaced_worker_still_runs(make_pjh, tmp_path, how):
    jh = make_pjh(1)
    pidfile = str(tmp_path / "pid")
    cfg = hi.Config(job_handler=jh, job_timeout=1.0) if how == "timeout" else hi.Config(job_handler=jh)
    with cfg:
        if how == "death":
            first = cf.die_exit.run(code=9)
        else:
            first = cf.pid_then_sleep.run(path=pidfile, t=20)
        behind = add.run(x=20, y=1)
    if how == "cancel":
        wait_for_file(pidfile)
        first.cancel()
    expected = {"cancel": hi.JobCancelledException, "death": hi.WorkerDiedError,
                "timeout": hi.JobTimeoutError}[how]
    with pytest.raises(expected):
        first.wait(timeout=15)
    assert behind.wait(timeout=15) == 21


def test_keyboard_interrupt_in_inline_job_does_not_leave_a_running_job():
    """A real Ctrl-C (SIGINT) inside a job run inline by the DefaultJobHandler propagates (as
    it should) but must not leave the job 'running' forever: hi.wait() would then never
    return. (A job *raising* KeyboardInterrupt itself is a job error: test_core_faults.)"""
    import signal
    import time

    from hither.jobs.manager import manager

    @hi.function('core_interrupted', '0.1.0')
    def core_interrupted():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    with pytest.raises(KeyboardInterrupt):
        core_interrupted.run()
    stale = [j for j in manager.active_jobs() if j.function_name == 'core_interrupted']
    assert not stale, f"job left {stale[0].get_status().value} after KeyboardInterrupt"
    hi.wait(timeout=2)


@pytest.mark.parametrize("where", ["busy loop", "re-raised by the job", "program's own handler"])
def test_real_ctrl_c_is_told_from_a_raise_without_a_recorder(where):
    """A real Ctrl-C propagates wherever it lands in an inline job (a busy loop, a job that
    catches and re-raises it, the program's own SIGINT handler raising KeyboardInterrupt),
    while a job's own ``raise KeyboardInterrupt`` is that job's error; no SIGINT handler is
    swapped in per job (``getsignal`` is the same during the job)."""
    import signal

    seen = []

    @hi.function('core_ctrl_c', '0.1.0')
    def core_ctrl_c(where):
        seen.append(signal.getsignal(signal.SIGINT))
        def busy():
            os.kill(os.getpid(), signal.SIGINT)
            x = 0
            for i in range(10 ** 7):
                x += i
            return x

        if where != "re-raised by the job":
            return busy()
        try:
            return busy()
        except KeyboardInterrupt:
            raise

    def own_handler(signum, frame):
        raise KeyboardInterrupt("from the program's handler")

    before = signal.getsignal(signal.SIGINT)
    if where == "program's own handler":
        signal.signal(signal.SIGINT, own_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            core_ctrl_c.run(where=where)
        assert seen == [signal.getsignal(signal.SIGINT)]
    finally:
        signal.signal(signal.SIGINT, before)
    hi.wait(timeout=2)


MODULE_WITH_HANDLER = '''
import os
import re
import subprocess
import sys
import hither as hi
from hither.testing.processes import wait_for_file

jh = hi.ParallelJobHandler(num_workers=2)   # at import time, as user modules do


@hi.function('count_my_children', '0.1.0')
def count_my_children():
    me = str(os.getpid())
    n = 0
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    n += f.read().rsplit(')', 1)[1].split()[1] == me
            except OSError:
                pass
    return n
'''


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="counts processes through /proc")
def test_worker_importing_a_module_with_a_handler_starts_no_processes(tmp_path, monkeypatch):
    (tmp_path / "module_with_handler.py").write_text(MODULE_WITH_HANDLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import module_with_handler as m

    try:
        with hi.Config(job_handler=m.jh):
            # the worker imports the module (and so makes a handler) to find the function
            assert m.count_my_children.run().wait(60) == 0
    finally:
        m.jh.shutdown()


def test_finished_pipeline_does_not_keep_intermediate_jobs_alive(handler):
    import gc
    import weakref

    def build():
        with hi.Config(job_handler=handler):
            first = identity.run(x=np.ones(1000))
            middle = identity.run(x=first)
            last = identity.run(x=middle)
        return last, weakref.ref(first), weakref.ref(middle)

    last, first_ref, middle_ref = build()
    result = last.wait(60)
    np.testing.assert_array_equal(result, np.ones(1000))
    gc.collect()
    assert first_ref() is None and middle_ref() is None, \
        "a finished job still holds its input jobs (and so every intermediate result)"
    assert last.dependencies == []  # weakly held: gone with them
    np.testing.assert_array_equal(last.kwargs["x"], np.ones(1000))  # its own inputs stay


def test_a_shut_down_handler_refuses_new_jobs_clearly():
    jh = hi.ParallelJobHandler(num_workers=1)
    jh.shutdown()
    with hi.Config(job_handler=jh):
        job = identity.run(x=1)
    with pytest.raises(hi.HitherError, match="shut down"):
        job.wait(10)


def test_unstarted_handlers_leave_no_open_files(monkeypatch):
    monkeypatch.setenv("HITHER_IN_WORKER", "1")  # as inside a worker: the pool starts lazily
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        hi.ParallelJobHandler(num_workers=2).shutdown()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_job_runs_in_the_folder_the_program_is_in_at_run(handler, tmp_path, monkeypatch):
    """Relative paths in a job mean what they mean in the program at .run(), whichever
    handler runs it (Parallel workers started earlier, in another folder, follow along)."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with hi.Config(job_handler=handler):
        for folder in (first, second):
            monkeypatch.chdir(folder)
            assert cf.write_relative.run(name="out.txt", text=folder.name).wait(30) == str(folder)
            assert (folder / "out.txt").read_text() == folder.name
        gone = tmp_path / "gone"
        gone.mkdir()
        monkeypatch.chdir(gone)
        gone.rmdir()
        job = cf.write_relative.run(name="out.txt", text="x")
        with pytest.raises(Exception, match="gone|No such file"):
            job.wait(30)

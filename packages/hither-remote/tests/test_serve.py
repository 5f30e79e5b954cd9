"""hither-remote end to end with real ``hither-remote serve`` processes, the real
MongoDB-protocol server and the S3 API over loopback; client and resource share nothing
else (separate temp, results and store-cache folders)."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import hither as hi
from hither.testing.processes import alive, wait_for_pids
from hither.errors import JobCancelledException
from hither.values.refs import StoredResult

import remote_funcs as rf

pytestmark = pytest.mark.timeout(120)


def test_results_errors_and_a_pipeline(serve, jh, tmp_path):
    server = serve("resource", "--workers", "2")
    with hi.Config(job_handler=jh):
        s = rf.rt_add.run(x=1, y=2)
        bad = rf.rt_fail.run(msg="bad input 42")
        a = rf.rt_ones.run(n=100_000)            # 800 KB: stays in the S3 store
        b = rf.rt_add.run(x=a, y=1.0)            # gets a's URI, not its bytes
        big = rf.rt_add.run(x=np.ones(1_500_000), y=2.0)   # 12 MB in and out: through the store
        assert s.wait(60) == 3
        with pytest.raises(ValueError, match="bad input 42") as ei:
            bad.wait(60)
        b.wait_done(60)
    assert "rt_fail" in (getattr(ei.value, "remote_traceback", "") or "")
    assert isinstance(a._result, StoredResult) and isinstance(b._result, StoredResult)
    from hither.values.refs import _UNSET

    assert a._result._value is _UNSET, "a's result travelled through the client"
    np.testing.assert_array_equal(big.wait(60), np.full(1_500_000, 3.0))
    import bson

    sizes = [len(bson.encode(d)) for d in jh.bus.jobs.find({})]
    assert len(sizes) == 5 and max(sizes) < 64 * 1024, sizes  # far from MongoDB's 16 MB
    np.testing.assert_array_equal(b.get_result(), np.full(100_000, 2.0))
    log = server.log()
    assert "start rt_add" in log and "end rt_add" in log and "end rt_fail" in log
    assert os.environ["HITHER_REMOTE_SECRET"] not in log
    # one after another, jobs of one code bundle run in one reused job process (no fork each)
    pids = []
    with hi.Config(job_handler=jh):
        for i in range(4):
            j = rf.rt_add.run(x=1000 + i, y=0)
            assert j.wait(60) == 1000 + i
            pids.append(j.get_runtime_info().pid)
    assert len(set(pids)) == 1, pids


def test_cancel_kills_the_running_job_within_2_s(serve, jh, tmp_path):
    server = serve()
    pid_file = str(tmp_path / "pids")
    with hi.Config(job_handler=jh):
        j = rf.rt_sleep_pid.run(t=300, pid_file=pid_file)
        [pid] = wait_for_pids(pid_file)
        t0 = time.monotonic()
        assert j.cancel()
        with pytest.raises(JobCancelledException):
            j.wait(5)
        while alive(pid):
            assert time.monotonic() - t0 < 2.0, "the job's process still runs 2 s after cancel()"
            time.sleep(0.02)
        assert rf.rt_add.run(x=2, y=3).wait(60) == 5  # the resource goes on
    server.wait_log("cancelled")


@pytest.mark.slow
def test_kill_9_mid_job_then_restart_reruns_it(serve, jh, tmp_path):
    first = serve("first", "--lease-seconds", "2")
    pid_file = str(tmp_path / "pids")
    with hi.Config(job_handler=jh):
        j = rf.rt_sleep_pid.run(t=2, pid_file=pid_file, x=7)
        [pid] = wait_for_pids(pid_file)
        first.stop(signal.SIGKILL)
        # the job runs in a process group of its own (a fork of serve's job server), and
        # dies with the server: nothing of the killed serve goes on running
        deadline = time.monotonic() + 10
        while alive(pid):
            assert time.monotonic() < deadline, "the job outlived its kill -9'd serve process"
            time.sleep(0.05)
        second = serve("second", "--lease-seconds", "2")
        assert j.wait(60) == 7
    assert len(wait_for_pids(pid_file, count=2)) == 2, "the job was not run again"
    assert "attempt 2" in second.log()


@pytest.mark.slow
def test_sigterm_hands_the_running_job_back(serve, jh, tmp_path):
    first = serve("first")
    pid_file = str(tmp_path / "pids")
    with hi.Config(job_handler=jh):
        j = rf.rt_sleep_pid.run(t=2, pid_file=pid_file, x=9)
        [pid] = wait_for_pids(pid_file)
        assert first.stop(signal.SIGTERM) == 0
        assert not alive(pid)
        assert "handed back" in first.log()
        serve("second")
        assert j.wait(60) == 9  # no lease to wait for: it was back in the queue at once


@pytest.mark.slow
def test_two_servers_run_each_job_once(serve, jh, db, tmp_path):
    serve("one", "--workers", "2")
    serve("two", "--workers", "2")
    with hi.Config(job_handler=jh):
        jobs = [rf.rt_add.run(x=i, y=1000) for i in range(16)]
        assert [j.wait(90) for j in jobs] == [i + 1000 for i in range(16)]
    from hither_remote.bus import Bus

    bus = Bus(db)
    try:
        docs = list(bus.jobs.find({}, {"attempts": 1, "lease_owner": 1}))
        assert len(docs) == 16 and all(d["attempts"] == 1 for d in docs)
        assert len({d["lease_owner"] for d in docs}) == 2, "one server did all the work"
        deadline = time.monotonic() + 10  # marked done with the next claim round, or the loop's next turn
        while bus.runs.count_documents({"done": True}) < 16:
            assert time.monotonic() < deadline, f"{bus.runs.count_documents({'done': True})} of 16 runs done"
            time.sleep(0.1)
    finally:
        bus.close()

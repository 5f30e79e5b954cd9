"""SlurmJobHandler running jobs through pilots, as local processes and on a real Slurm:
results, errors, console output, runtime info, cancel, timeout, crashes, idle pilots."""
import os
import sys
import time

import numpy as np
import pytest

import hither as hi
from hither.errors import JobCancelledException, JobTimeoutError, WorkerDiedError
from hither.testing.processes import wait_dead, wait_for_pids

import slurm_funcs as sf

pytestmark = pytest.mark.timeout(90)


def test_results_errors_console_and_runtime_info(handler, mode):
    with hi.Config(job_handler=handler):
        adds = [sf.slurm_add.run(x=i, y=10) for i in range(6)]
        w = sf.slurm_where.run()
        a = sf.slurm_arr.run(n=4)
        bad = sf.slurm_fail.run(message="no good")
    assert [j.wait(60) for j in adds] == [i + 10 for i in range(6)]
    assert np.array_equal(a.wait(60), np.arange(4) * 2)
    where = w.wait(60)
    assert where["pid"] != os.getpid()
    ri = w.get_runtime_info()
    assert ri.stdout == "hello from the pilot\n" and ri.stderr == "on stderr\n"
    assert ri.handler == "slurm" and ri.batch == where["batch"]
    with open(ri.log_file) as f:
        assert "hello from the pilot" in f.read()
    if mode == "slurm":
        assert where["slurm_job_id"] and ri.slurm_job_id == where["slurm_job_id"]
    else:
        assert where["slurm_job_id"] is None
    with pytest.raises(ValueError, match="no good") as ei:
        bad.wait(60)
    assert "slurm_fail" in getattr(ei.value, "remote_traceback", "") or "raise ValueError" in str(
        getattr(ei.value, "remote_traceback", ""))


def test_pipeline_mixes_slurm_and_local_jobs(handler):
    with hi.Config(job_handler=handler):
        a = sf.slurm_add.run(x=1, y=2)
    b = sf.slurm_add.run(x=a, y=100)  # local, fed by a Slurm job
    with hi.Config(job_handler=handler):
        c = sf.slurm_arr.run(n=b)  # on Slurm, fed by a local job
    assert c.wait(60).shape == (103,)


def test_cancel_kills_the_job_tree_and_the_pilot_goes_on(handler, tmp_path):
    pidfile = str(tmp_path / "pids")
    with hi.Config(job_handler=handler):
        long = sf.slurm_sleep.run(seconds=120, pidfile=pidfile)
        pids = wait_for_pids(pidfile)
        assert long.get_status() == hi.JobStatus.RUNNING
        batch = long.get_runtime_info().batch
        assert long.cancel()
        with pytest.raises(JobCancelledException):
            long.wait(10)
        assert wait_dead(pids), "the cancelled job's processes still run"
        nxt = sf.slurm_where.run()
        assert nxt.wait(60)["batch"] == batch  # the same pilot took the next job
    assert len(handler.batches()) == 1


def test_cancel_of_a_queued_job(make_handler):
    jh = make_handler(use_slurm=False, num_workers_per_batch=1)
    with hi.Config(job_handler=jh):
        first = sf.slurm_sleep.run(seconds=2)
        queued = sf.slurm_add.run(x=1, y=1)
        assert queued.cancel()
        with pytest.raises(JobCancelledException):
            queued.wait(5)
        assert first.wait(60) == 2
    assert not os.listdir(os.path.join(jh.wd.root, "queue"))


def test_timeout_kills_the_job_tree(handler, tmp_path):
    pidfile = str(tmp_path / "pids")
    with hi.Config(job_handler=handler, job_timeout=2):
        job = sf.slurm_sleep.run(seconds=120, pidfile=pidfile)
        with pytest.raises(JobTimeoutError, match="job_timeout=2"):
            job.wait(60)
    assert wait_dead(wait_for_pids(pidfile))


def test_a_crashing_job_fails_alone(handler):
    with hi.Config(job_handler=handler):
        bad = sf.slurm_crash.run()
        with pytest.raises(WorkerDiedError, match="exit code 9"):
            bad.wait(60)
        assert sf.slurm_add.run(x=2, y=3).wait(60) == 5


def test_idle_pilots_exit(make_handler):
    jh = make_handler(use_slurm=False, idle_timeout=1)
    with hi.Config(job_handler=jh):
        assert sf.slurm_add.run(x=1, y=1).wait(60) == 2
    (batch,) = jh.batches()
    assert batch.proc.wait(20) == 0
    # a new job starts a new batch
    with hi.Config(job_handler=jh):
        assert sf.slurm_add.run(x=2, y=2).wait(60) == 4


@pytest.mark.slow
def test_batches_grow_with_the_queue_up_to_the_limit(make_handler):
    jh = make_handler(use_slurm=False, num_workers_per_batch=1, max_simultaneous_batches=2)
    with hi.Config(job_handler=jh):
        jobs = [sf.slurm_where.run() for _ in range(4)] + [sf.slurm_sleep.run(seconds=1) for _ in range(2)]
        batches = {j.wait(60)["batch"] for j in jobs[:4]}
        for j in jobs[4:]:
            j.wait(60)
    assert len(batches) <= 2 and len(os.listdir(os.path.join(jh.wd.root, "batches"))) == 2


@pytest.mark.slow
def test_a_job_too_long_for_the_rest_of_a_batch_goes_to_a_new_batch(make_handler):
    # batch limit 20 s, a start needs job_timeout + 5 s left: after 6 s, a 14 s job no longer fits
    jh = make_handler(use_slurm=False, num_workers_per_batch=1, time_limit_per_batch=20)
    with hi.Config(job_handler=jh, job_timeout=14):
        first = sf.slurm_sleep.run(seconds=6)
        time.sleep(0.5)
        second = sf.slurm_where.run()
        assert first.wait(60) == 6
        where = second.wait(60)
    assert where["batch"] != first.get_runtime_info().batch


@pytest.mark.parametrize("setup, match", [
    ("no_sbatch", "sbatch is not installed here"),
    ("no_python", "cannot start a local pilot"),
    ("dying_pilot", "ended before it started working"),
])
def test_batches_that_cannot_start_fail_the_jobs_clearly(make_handler, monkeypatch, setup, match):
    from hither_slurm import SlurmError

    if setup == "no_sbatch":  # Slurm commands absent from PATH
        monkeypatch.setenv("PATH", os.path.dirname(os.sys.executable))
        jh = make_handler(use_slurm=True)
    elif setup == "no_python":
        jh = make_handler(use_slurm=False, python="/nonexistent/python3")
    else:  # a "Python" that exits at once (as one without hither_slurm would)
        jh = make_handler(use_slurm=False, python="/bin/false")
    with hi.Config(job_handler=jh):
        job = sf.slurm_add.run(x=1, y=2)
        with pytest.raises(SlurmError, match=match):
            job.wait(30)


def test_a_pilot_that_never_came_up_does_not_fail_the_next_jobs(make_handler, tmp_path):
    """The second of two local pilots dies before it starts working (its "Python" fails once,
    as on a node without hither_slurm) while the first runs all the jobs. Once the first has
    ended, the next job starts a new pilot and runs: the old pilot's error must not fail it
    (it did, once: the launch error outlived the jobs it came with)."""
    starts = tmp_path / "starts"
    python = tmp_path / "python"
    python.write_text(f"""#!/bin/sh
n=$(( $(cat {starts} 2>/dev/null || echo 0) + 1 ))
echo $n > {starts}
if [ $n -eq 2 ]; then echo "this python is broken" >&2; exit 3; fi
exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    jh = make_handler(use_slurm=False, python=str(python), num_workers_per_batch=1,
                      max_simultaneous_batches=2, idle_timeout=1)
    with hi.Config(job_handler=jh):
        jobs = [sf.slurm_sleep.run(seconds=2 + i * 0.01) for i in range(2)]
        assert [j.wait(30) for j in jobs] == [2, 2.01]
    assert starts.read_text().strip() == "2", "the second pilot was not started: no case made"
    batch = jobs[0].get_runtime_info().batch
    assert jobs[1].get_runtime_info().batch == batch
    pid = jh.wd.pilot_info(batch)["pid"]
    assert wait_dead([pid], 15), f"the first pilot ({pid}) did not end when idle"
    with hi.Config(job_handler=jh):
        assert sf.slurm_add.run(x=1, y=2).wait(30) == 3
    assert starts.read_text().strip() == "3"

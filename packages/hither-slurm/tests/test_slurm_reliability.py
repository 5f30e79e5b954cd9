"""Faults that are not the job's fault, on the real Slurm (issue 21): a batch cancelled while
it pends requeues its jobs; a slow squeue never holds up .run() or results; an sbatch that
slurmctld does not answer is retried; a job killed by the batch time limit is requeued only
when a fresh batch could finish it; messages; pruning of a reused working_dir.

Slow or failing Slurm commands are real commands behind a shim on PATH: the shim sleeps, or
fails the way sbatch does when slurmctld does not answer, then runs the real command."""
import os
import shutil
import subprocess
import time

import pytest

import hither as hi
from hither.errors import JobTimeoutError

import slurm_funcs as sf

pytestmark = pytest.mark.timeout(180)


def _shim(tmp_path, monkeypatch, name, body):
    """Put a ``name`` on PATH that runs ``body`` (sh) and then the real command; ``$N`` in
    body is a counter of calls (1, 2, ...)."""
    real = shutil.which(name)
    assert real, f"no {name} here"
    d = tmp_path / "shims"
    d.mkdir(exist_ok=True)
    count = d / f"{name}.count"
    (d / name).write_text(
        "#!/bin/sh\n"
        f"N=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $N > {count}\n"
        f"{body}\n"
        f'exec {real} "$@"\n')
    (d / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{d}:{os.environ['PATH']}")
    return count


def _hold_batch(tmp_path, monkeypatch, n):
    """Submit the ``n``-th batch held (it pends, reason JobHeldUser, until scancel'ed)."""
    _shim(tmp_path, monkeypatch, "sbatch", f'if [ "$N" = {n} ]; then set -- --hold "$@"; fi')


def _calls(count):
    return int(count.read_text()) if count.exists() else 0


def _wait_state(jh, state, seconds=60.0, not_ids=()):
    deadline = time.monotonic() + seconds
    while True:
        for b in jh.batches():
            if b.slurm_job_id and b.slurm_job_id not in not_ids and b.state == state:
                return b
        assert time.monotonic() < deadline, f"no batch became {state}: {jh.batches()}"
        time.sleep(0.1)


def test_a_batch_cancelled_while_pending_requeues_its_jobs(slurm, make_handler, tmp_path, monkeypatch):
    # the first batch is submitted held (it pends, reason JobHeldUser), then scancel'ed
    _hold_batch(tmp_path, monkeypatch, 1)
    jh = make_handler()
    with hi.Config(job_handler=jh):
        job = sf.slurm_add.run(x=2, y=3)
        b = _wait_state(jh, "PENDING")
        subprocess.run(["scancel", b.slurm_job_id], check=True, timeout=30)
        assert job.wait(60) == 5
    assert job.get_runtime_info().slurm_job_id != b.slurm_job_id


@pytest.mark.slow
def test_a_replacement_batch_cancelled_before_its_pilot_starts(slurm, make_handler, tmp_path, monkeypatch):
    """A running batch is lost (scancel): its job is requeued once; the replacement batch is
    cancelled while it pends: the job waits for a third batch and finishes there."""
    _hold_batch(tmp_path, monkeypatch, 2)
    jh = make_handler(idle_timeout=60)
    with hi.Config(job_handler=jh):
        job = sf.slurm_sleep.run(seconds=3, pidfile=str(tmp_path / "pids"))
        deadline = time.monotonic() + 120
        while job.get_status() != hi.JobStatus.RUNNING:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        first = job.get_runtime_info().slurm_job_id
        subprocess.run(["scancel", first], check=True, timeout=30)
        second = _wait_state(jh, "PENDING", seconds=60, not_ids=(first,))
        subprocess.run(["scancel", second.slurm_job_id], check=True, timeout=30)
        assert job.wait(150) == 3
    assert job.get_runtime_info().slurm_job_id not in (first, second.slurm_job_id)


def test_a_slow_squeue_holds_up_neither_run_nor_results(slurm, make_handler, tmp_path, monkeypatch):
    jh = make_handler(idle_timeout=60)
    with hi.Config(job_handler=jh):
        assert sf.slurm_add.run(x=1, y=1).wait(60) == 2  # a batch runs
        count = _shim(tmp_path, monkeypatch, "squeue", "sleep 6")
        time.sleep(1.5)  # a slow squeue is under way
        worst_run, worst_result = 0.0, 0.0
        for i in range(8):
            t0 = time.monotonic()
            job = sf.slurm_add.run(x=i, y=100)
            worst_run = max(worst_run, time.monotonic() - t0)
            assert job.wait(30) == i + 100
            worst_result = max(worst_result, time.monotonic() - t0)
            time.sleep(0.3)
    assert _calls(count) >= 1, "squeue was never called: the test did not make its case"
    assert worst_run < 0.5, f".run() took {worst_run:.1f} s while squeue was slow"
    assert worst_result < 3.0, f"a result took {worst_result:.1f} s while squeue was slow"


def test_sbatch_is_retried_while_slurmctld_does_not_answer(slurm, make_handler, tmp_path, monkeypatch):
    count = _shim(tmp_path, monkeypatch, "sbatch",
                  'if [ "$N" -le 2 ]; then echo "sbatch: error: Batch job submission failed: '
                  'Unable to contact slurm controller (connect failure)" >&2; exit 1; fi')
    jh = make_handler()
    with hi.Config(job_handler=jh):
        assert sf.slurm_add.run(x=20, y=22).wait(60) == 42
    assert _calls(count) == 3


def test_sbatch_retries_end_with_a_clear_error(slurm, make_handler, tmp_path, monkeypatch):
    _shim(tmp_path, monkeypatch, "sbatch",
          'echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv '
          'operation" >&2; exit 1')
    jh = make_handler()
    jh._launcher.submit_retry_seconds = 3
    t0 = time.monotonic()
    with hi.Config(job_handler=jh):
        job = sf.slurm_add.run(x=1, y=2)
        with pytest.raises(hi.HitherError, match="slurmctld did not take the batch") as err:
            job.wait(30)
    assert 3 <= time.monotonic() - t0 < 20
    assert "Socket timed out" in str(err.value) and "scontrol ping" in str(err.value)


def test_sbatch_refusing_the_request_fails_at_once(slurm, make_handler, tmp_path, monkeypatch):
    count = _shim(tmp_path, monkeypatch, "sbatch",
                  'echo "sbatch: error: invalid partition specified: nope" >&2; exit 1')
    jh = make_handler()
    t0 = time.monotonic()
    with hi.Config(job_handler=jh):
        job = sf.slurm_add.run(x=1, y=2)
        with pytest.raises(hi.HitherError, match="invalid partition"):
            job.wait(30)
    assert time.monotonic() - t0 < 10 and _calls(count) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_job_killed_by_the_batch_time_limit_is_not_requeued(slurm, make_handler):
    """A job with no job_timeout runs until Slurm kills its batch at the time limit (1
    minute): a fresh batch would give it no more time, so it fails naming
    time_limit_per_batch instead of taking a second allocation."""
    jh = make_handler(time_limit_per_batch=60, idle_timeout=120)
    t0 = time.monotonic()
    with hi.Config(job_handler=jh):
        job = sf.slurm_sleep.run(seconds=400)
        with pytest.raises(JobTimeoutError, match="time_limit_per_batch=60") as err:
            job.wait(250)
    took = time.monotonic() - t0
    assert took < 150, f"failed after {took:.0f} s: requeued into a second batch?"
    assert "not requeued" in str(err.value)


def test_a_segfault_names_its_signal_and_no_hint_that_does_not_apply(slurm, make_handler):
    jh = make_handler()
    with hi.Config(job_handler=jh):
        job = sf.slurm_segv.run()
        with pytest.raises(hi.HitherError) as err:
            job.wait(60)
    msg = str(err.value)
    assert "SIGSEGV" in msg and "native code" in msg, msg
    assert "python3 in the image" not in msg and "out of memory" not in msg, msg
    assert os.path.join(jh.wd.root, "jobs") not in msg, msg  # a folder that is deleted
    ri = job.get_runtime_info()
    assert ri.start_time and ri.end_time and ri.end_time >= ri.start_time
    with open(ri.log_file) as f:
        assert "about to crash" in f.read()


def test_a_job_waiting_for_a_pending_batch_says_why(slurm, make_handler, tmp_path, monkeypatch):
    _hold_batch(tmp_path, monkeypatch, 1)
    jh = make_handler()
    with hi.Config(job_handler=jh):
        job = sf.slurm_add.run(x=1, y=1)
        b = _wait_state(jh, "PENDING")
        deadline = time.monotonic() + 10
        while "JobHeldUser" not in (getattr(job.get_runtime_info(), "pending_reason", None) or ""):
            assert time.monotonic() < deadline, job.get_runtime_info()
            time.sleep(0.1)
        assert b.slurm_job_id in job.get_runtime_info().pending_reason
        with pytest.raises(TimeoutError, match="JobHeldUser"):  # the wait's timeout says why too
            job.wait(0.5)
        subprocess.run(["scancel", b.slurm_job_id], check=True, timeout=30)
        assert job.wait(60) == 2


def test_a_reused_working_dir_is_pruned_of_what_ended(slurm, make_handler, tmp_path):
    from hither_slurm import workdir

    work = tmp_path / "reused"
    jh = hi.SlurmJobHandler(working_dir=str(work), num_workers_per_batch=1, num_cores_per_job=1,
                            idle_timeout=5)
    with hi.Config(job_handler=jh):
        ok = sf.slurm_add.run(x=1, y=1)
        bad = sf.slurm_fail.run(message="kept")
        assert ok.wait(60) == 2
        with pytest.raises(ValueError):
            bad.wait(60)
    ok_log, bad_log = ok.get_runtime_info().log_file, bad.get_runtime_info().log_file
    assert os.listdir(work / "batches")
    jh.shutdown()
    assert os.path.exists(ok_log) and os.path.exists(bad_log)
    assert os.listdir(work / "pilots") and os.listdir(work / "running")
    past = time.time() - workdir.LOG_RETENTION - 60
    for log in (ok_log, bad_log):
        os.utime(log, (past, past))
    again = hi.SlurmJobHandler(working_dir=str(work), num_workers_per_batch=1, num_cores_per_job=1)
    try:
        assert not os.path.exists(ok_log), "the log of a job that ended well outlived its retention"
        assert os.path.exists(bad_log), "the log of a failed job went before its retention"
        assert os.listdir(work / "batches") == [] and os.listdir(work / "pilots") == []
        assert os.listdir(work / "running") == []
        older = time.time() - workdir.FAILED_LOG_RETENTION - 60
        os.utime(bad_log, (older, older))
        assert again.prune() >= 1 and not os.path.exists(bad_log)
    finally:
        again.shutdown()

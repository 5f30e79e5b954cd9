"""Lost allocations and leaving: a SIGKILLed pilot or a scancel'ed batch fails its running
jobs with AllocationLostError, which their retry policy (hi.Retry) reruns while attempts
are left (never a hang); hi.reset() cancels the handler's batches."""
import json
import os
import signal
import subprocess
import time

import pytest

import hither as hi
from hither.testing.processes import wait_for_pids
from hither_slurm import AllocationLostError
from hither_slurm.batches import squeue_states

import slurm_funcs as sf

pytestmark = pytest.mark.timeout(120)


def _running_batch(job, not_batch=None, seconds=60.0):
    """The batch whose pilot runs ``job`` (another than ``not_batch``), once it runs."""
    deadline = time.monotonic() + seconds
    while True:
        ri = job.get_runtime_info()
        if job.get_status() == hi.JobStatus.RUNNING and getattr(ri, "batch", None) not in (None, not_batch):
            return ri.batch
        assert time.monotonic() < deadline, f"{job} never started (in a batch other than {not_batch})"
        time.sleep(0.05)


def _pilot(jh, batch):
    with open(os.path.join(jh.wd.root, "pilots", batch + ".json")) as f:
        return json.load(f)


def _lose(jh, batch, how):
    if how in ("sigkill", "sigterm"):
        os.kill(_pilot(jh, batch)["pid"], signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
    else:
        subprocess.run(["scancel", _pilot(jh, batch)["slurm_job_id"]], check=True, timeout=30)


@pytest.mark.parametrize("mode, how", [
    ("local", "sigkill"), ("slurm", "sigkill"), ("slurm", "scancel"),
], indirect=["mode"])
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_lost_allocation_is_retried_by_the_policy_then_fails(mode, make_handler, tmp_path, how):
    jh = make_handler(use_slurm=(mode == "slurm"))
    pidfile = str(tmp_path / "pids")
    with hi.Config(job_handler=jh):
        # lost once: the default policy runs it again in another batch, where it finishes
        job = sf.slurm_sleep.run(seconds=2, pidfile=pidfile)
        first = _running_batch(job)
        pids = wait_for_pids(pidfile)
        os.remove(pidfile)
        _lose(jh, first, how)
        # a new batch may wait for Slurm to finish killing the lost one (KillWait, 30 s)
        second = _running_batch(job, not_batch=first, seconds=150)
        assert job.wait(60) == 2
        assert job.get_runtime_info().batch == second != first
        assert job.get_runtime_info().attempts == 2
        assert "AllocationLostError" in job.get_runtime_info().attempt_errors[0]
        assert not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
                       for p in pids), "the first run's processes outlived their pilot"

        # lost on its last attempt: a clear error
        with hi.Config(retry=hi.Retry(attempts=2, backoff=0.1)):
            job2 = sf.slurm_sleep.run(seconds=60, pidfile=pidfile)
        b1 = _running_batch(job2)
        wait_for_pids(pidfile)
        os.remove(pidfile)
        _lose(jh, b1, how)
        b2 = _running_batch(job2, not_batch=b1, seconds=150)
        wait_for_pids(pidfile)
        _lose(jh, b2, how)
        with pytest.raises(AllocationLostError, match="was lost: the allocation running it"):
            job2.wait(150)
        assert job2.get_runtime_info().attempts == 2
        # the handler goes on
        assert sf.slurm_add.run(x=1, y=1).wait(60) == 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_batch_seen_ended_before_its_pilot_stops(mode, make_handler, tmp_path):
    """The race behind issue 11. squeue shows a scancel'ed batch as ended (CG) before its
    pilot gets SIGTERM; the handler requeues the batch's job at once, and the pilot, still
    running with a free slot, used to claim it again, then died of the SIGTERM and left the
    claim in a batch nobody watched: the job waited for ever. The early squeue report is the
    one simulated part (the batch is marked ended while its pilot runs); pilots, jobs and
    the signal are real."""
    jh = make_handler(use_slurm=(mode == "slurm"), idle_timeout=300)
    pidfile = str(tmp_path / "pids")
    with hi.Config(job_handler=jh):
        job = sf.slurm_sleep.run(seconds=3, pidfile=pidfile)
        first = _running_batch(job)
        wait_for_pids(pidfile)
        (batch,) = jh.batches()
        pilot = _pilot(jh, first)
        batch.alive = False  # what squeue says first
        deadline = time.monotonic() + 10
        while batch in jh._batches:
            assert time.monotonic() < deadline, "the handler did not see the batch end"
            time.sleep(0.05)
        time.sleep(1.0)  # the pilot runs on meanwhile (it could claim the requeued job here)
        _lose(jh, first, "scancel" if mode == "slurm" else "sigterm")
        second = _running_batch(job, not_batch=first, seconds=90)
        assert job.wait(60) == 3
    assert job.get_runtime_info().batch == second != first
    assert first not in os.listdir(os.path.join(jh.wd.root, "running"))
    if mode == "local":
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pilot['pid']}") and \
                open(f"/proc/{pilot['pid']}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the given-up pilot still runs"
            time.sleep(0.1)


def test_reset_cancels_the_batches(mode, make_handler):
    jh = make_handler(use_slurm=(mode == "slurm"), idle_timeout=300)
    with hi.Config(job_handler=jh):
        assert sf.slurm_add.run(x=1, y=1).wait(60) == 2
        pending = sf.slurm_sleep.run(seconds=60)
        _running_batch(pending)
    batches = jh.batches()
    assert batches
    hi.reset()
    with pytest.raises(hi.JobCancelledException):
        pending.wait(5)
    for b in batches:
        if b.proc is not None:
            assert b.proc.poll() is not None
        else:
            deadline = time.monotonic() + 20
            while squeue_states().get(b.slurm_job_id) not in (None, "COMPLETED", "CANCELLED"):
                assert time.monotonic() < deadline, f"batch {b} still in squeue after hi.reset()"
                time.sleep(0.2)


@pytest.mark.slow
def test_program_exit_cancels_the_batches(mode, tmp_path):
    """A script that leaves without waiting: its batches end with it."""
    script = tmp_path / "leave.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import hither as hi, slurm_funcs as sf\n"
        f"jh = hi.SlurmJobHandler(working_dir={str(tmp_path / 'w')!r}, num_workers_per_batch=1,\n"
        f"    num_cores_per_job=1, idle_timeout=300, use_slurm={mode == 'slurm'})\n"
        "with hi.Config(job_handler=jh):\n"
        "    job = sf.slurm_sleep.run(seconds=60)\n"
        "import time\n"
        "while job.get_status() != hi.JobStatus.RUNNING:\n"
        "    time.sleep(0.05)\n"
        "b = jh.batches()[0]\n"
        "print(b.slurm_job_id or b.proc.pid, flush=True)\n")
    out = subprocess.run([os.sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    ident = out.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 20
    if mode == "slurm":
        while squeue_states().get(ident) not in (None, "COMPLETED", "CANCELLED"):
            assert time.monotonic() < deadline, f"Slurm job {ident} outlived its program"
            time.sleep(0.2)
    else:
        while os.path.exists(f"/proc/{ident}") and "Z" not in open(f"/proc/{ident}/stat").read().rsplit(")", 1)[1].split()[0]:
            assert time.monotonic() < deadline, f"pilot {ident} outlived its program"
            time.sleep(0.1)


def test_restart_after_the_program_was_killed(mode, tmp_path):
    """The program killed (SIGKILL) and started again on the same working_dir: its pilots
    stop, its running job is killed, its queued job is taken away; a job it finished is a
    cache hit for the new program."""
    pytest.importorskip("hither_cache", reason="the job cache of this test is in hither-cache")
    work, cache, pidfile = tmp_path / "w", tmp_path / "cache", tmp_path / "pids"
    script = tmp_path / "killed.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import hither as hi, slurm_funcs as sf\n"
        f"jh = hi.SlurmJobHandler(working_dir={str(work)!r}, num_workers_per_batch=1,\n"
        f"    num_cores_per_job=1, idle_timeout=300, use_slurm={mode == 'slurm'})\n"
        f"with hi.Config(job_handler=jh, job_cache=hi.JobCache(path={str(cache)!r})):\n"
        "    assert sf.slurm_add.run(x=20, y=22).wait(60) == 42\n"
        f"    running = sf.slurm_sleep.run(seconds=120, pidfile={str(pidfile)!r})\n"
        "    queued = sf.slurm_add.run(x=1, y=2)\n"
        "while running.get_status() != hi.JobStatus.RUNNING:\n"
        "    time.sleep(0.05)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n")
    proc = subprocess.Popen([os.sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        pids = wait_for_pids(str(pidfile))
        (pilot_file,) = os.listdir(work / "pilots")
        with open(work / "pilots" / pilot_file) as f:
            pilot = json.load(f)
        assert len(os.listdir(work / "queue")) == 1
    finally:
        proc.kill()
        proc.wait()
    jh = hi.SlurmJobHandler(working_dir=str(work), num_workers_per_batch=1, num_cores_per_job=1,
                            idle_timeout=5, use_slurm=(mode == "slurm"))
    try:
        assert os.listdir(work / "queue") == []  # the old program's queued job was taken away
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
                  for p in pids + [pilot["pid"]]):
            assert time.monotonic() < deadline, "the killed program's pilot or job still runs"
            time.sleep(0.1)
        with hi.Config(job_handler=jh, job_cache=hi.JobCache(path=str(cache))):
            hit = sf.slurm_add.run(x=20, y=22)
            assert hit.wait(60) == 42 and hit.get_runtime_info().cached
            assert sf.slurm_add.run(x=1, y=2).wait(60) == 3
    finally:
        jh.shutdown()

"""``SlurmJobHandler.job_dir_launcher()``: prepared job directories (as a hither-remote
compute resource unpacks them) run through the handler's pilots, on local pilots and on a
real Slurm. Jobs are prepared and collected by core's own outside path
(``hither.outside.path.run_outside``), the way a compute resource drives a launcher; the
JobHandler conformance suite runs through it too."""
from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest

import hither as hi
from hither.errors import ConfigError
from hither.plugins.interfaces import JobHandler, Launcher
from hither.outside.path import cancel_outside, run_outside
from hither.testing.handler_conformance import JobHandlerConformance
from hither.testing.processes import wait_for_pids
from hither.testing.services import unavailable
from hither_slurm import AllocationLostError

import slurm_funcs as sf

pytestmark = pytest.mark.timeout(180)


class _Seen(Launcher):
    """The slurm launcher, recording what each job directory holds when ``launch`` returns
    (run_outside removes it right after collecting)."""

    def __init__(self, inner):
        self.inner, self.name, self.capacity = inner, inner.name, inner.capacity
        self.seen = {}

    def launch(self, job_dir, timeout):
        try:
            return self.inner.launch(job_dir, timeout)
        finally:
            self.seen[os.path.basename(job_dir)] = sorted(
                os.path.relpath(os.path.join(d, f), job_dir) for d, _, fs in os.walk(job_dir) for f in fs)

    def kill(self, job_dir):
        self.inner.kill(job_dir)

    def close(self):
        self.inner.close()


class ThroughLauncher(JobHandler):
    """A JobHandler that runs each job through a Launcher on core's outside path, from a
    thread per job: what a compute resource does with the job directories it receives."""

    name = "through-launcher"
    supports_timeout = True
    needs_code_bundle = True
    containers_run_here = False

    def __init__(self, slurm, base_dir=None):
        self.slurm = slurm
        self.launcher = _Seen(slurm.job_dir_launcher())
        self.base_dir = base_dir
        self._jobs = set()

    def submit(self, job, inline):
        self._jobs.add(job)
        threading.Thread(target=self._run, args=(job,), daemon=True).start()

    def _run(self, job):
        job.report_running({"handler": self.name})
        try:
            run_outside(job, self.launcher, self.base_dir)
        finally:
            self._jobs.discard(job)

    def cancel(self, job):
        return cancel_outside(job)

    def shutdown(self, wait=True):
        for job in list(self._jobs):
            cancel_outside(job)
        self.launcher.close()
        self.slurm.shutdown(wait)


@pytest.fixture
def through(mode, make_handler):
    return ThroughLauncher(make_handler(use_slurm=(mode == "slurm")))


class TestJobDirLauncherConformance(JobHandlerConformance):
    cancels_running = True
    supports_timeout = True
    max_seconds = 180.0

    @pytest.fixture
    def handler(self, through):
        return through


def test_outputs_come_back_to_the_callers_job_dir(through, mode, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("hello")
    with hi.Config(job_handler=through):
        w = sf.slurm_where.run()
        a = sf.slurm_arr.run(n=3)
        bad = sf.slurm_fail.run(message="no good")
    where = w.wait(120)
    assert where["batch"] and (where["slurm_job_id"] is not None) == (mode == "slurm")
    ri = w.get_runtime_info()
    assert ri.stdout == "hello from the pilot\n" and ri.batch == where["batch"]
    assert np.array_equal(a.wait(120), np.arange(3) * 2)
    with pytest.raises(ValueError, match="no good"):
        bad.wait(120)
    seen = through.launcher.seen
    assert len(seen) == 3
    for files in seen.values():
        assert "runtime.json" in files and "console.log" in files and "spec.json" in files
    assert any("arrays/result-1.npy" in fs for fs in seen.values())
    assert sum("error.json" in fs for fs in seen.values()) == 1
    # nothing of these jobs is left in the working folder
    wd = through.slurm.wd
    assert os.listdir(wd.path("jobs")) == [] and os.listdir(wd.path("queue")) == []
    assert os.listdir(wd.path("logs")) == []


def test_a_job_dir_on_another_file_system_is_copied_there_and_back(mode, make_handler, tmp_path):
    other = "/dev/shm"
    if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system here")
    base = os.path.join(other, f"hither-slurm-test-{os.getpid()}-{time.monotonic_ns()}")
    os.makedirs(base)
    try:
        jh = ThroughLauncher(make_handler(use_slurm=(mode == "slurm")), base_dir=base)
        f = tmp_path / "data.txt"
        f.write_text("some text")
        with hi.Config(job_handler=jh):
            assert sf.slurm_add.run(x=2, y=3).wait(120) == 5
            back = sf.slurm_file_copy.run(f=hi.File(str(f))).wait(120)
        with open(back) as fh:
            assert fh.read() == "some text!"
        assert any(any(p.startswith("outputs/") for p in fs) for fs in jh.launcher.seen.values())
        assert os.listdir(base) == []  # run_outside removed what came back
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_capacity_and_timeout_checks(make_handler, tmp_path):
    jh = make_handler(use_slurm=False, num_workers_per_batch=3, max_simultaneous_batches=2,
                      time_limit_per_batch=60)
    launcher = jh.job_dir_launcher()
    assert launcher.capacity == 6
    assert make_handler(use_slurm=False).job_dir_launcher().capacity is None
    through = ThroughLauncher(jh)
    with hi.Config(job_handler=through, job_timeout=120):
        job = sf.slurm_add.run(x=1, y=1)
    with pytest.raises(ConfigError, match="time_limit_per_batch"):
        job.wait(30)


def test_kill_cancels_the_job_in_its_pilot(through, tmp_path):
    pidfile = str(tmp_path / "pids")
    with hi.Config(job_handler=through):
        job = sf.slurm_sleep.run(seconds=120, pidfile=pidfile)
        pids = wait_for_pids(pidfile, 120)
        t0 = time.monotonic()
        job.cancel()
        with pytest.raises(hi.JobCancelledException):
            job.wait(10)
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
              for p in pids):
        assert time.monotonic() < deadline, "the killed job's processes still run"
        time.sleep(0.05)
    assert time.monotonic() - t0 < 10
    # the pilot takes the next job
    with hi.Config(job_handler=through):
        assert sf.slurm_add.run(x=1, y=2).wait(60) == 3


@pytest.mark.slow
@pytest.mark.parametrize("mode, how", [("local", "sigkill"), ("slurm", "scancel")], indirect=["mode"])
@pytest.mark.timeout(400)
def test_a_lost_allocation_requeues_once_then_is_an_error_outcome(through, mode, how, tmp_path):
    from test_slurm_faults import _lose, _pilot

    jh = through.slurm
    pidfile = str(tmp_path / "pids")

    def batch_of_running():
        deadline = time.monotonic() + 150
        while True:
            claims = jh.wd.claims()
            if claims:
                return next(iter(claims.values()))
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.05)

    # retry=False: the job-directory path's own requeue-once is under test, not the policy
    with hi.Config(job_handler=through, retry=False):
        job = sf.slurm_sleep.run(seconds=60, pidfile=pidfile)
        wait_for_pids(pidfile, 150)
        os.remove(pidfile)
        b1 = batch_of_running()
        _lose(jh, b1, how)
        wait_for_pids(pidfile, 150)  # requeued: it runs again, in another batch
        b2 = batch_of_running()
        assert b2 != b1 and _pilot(jh, b2)
        _lose(jh, b2, how)
        with pytest.raises(AllocationLostError, match="lost twice"):
            job.wait(150)


def test_a_container_job_dir_runs_in_its_image_on_a_pilot(make_handler, tmp_path):
    pytest.importorskip("hither_container", reason="container jobs need hither-container on the nodes")
    from hither_container.docker_runner import DockerRunner

    if not DockerRunner.is_available():
        unavailable("no Docker engine: bash scripts/services.sh docker")
    host_only = tmp_path / "host-only"
    host_only.mkdir()
    through = ThroughLauncher(make_handler(use_slurm=False))
    with hi.Config(job_handler=through, container=True):
        r = sf.slurm_in_box.run(a=np.arange(4.0), host_only=str(host_only)).wait(240)
    assert r == {"in_container": True, "sum": 6.0}


def test_shutdown_ends_waiting_launches_with_a_clear_error(make_handler):
    """handler.shutdown() ends launches still waiting in the queue with a clear error."""
    jh = make_handler(use_slurm=False, num_workers_per_batch=1)
    through = ThroughLauncher(jh)
    with hi.Config(job_handler=through):
        busy = sf.slurm_sleep.run(seconds=120)
        queued = sf.slurm_add.run(x=1, y=1)
        deadline = time.monotonic() + 60
        while not jh.wd.claims():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    jh.shutdown()
    with pytest.raises(hi.errors.HitherError, match="shut down"):
        queued.wait(30)
    assert busy.wait_done(30)

"""``hither-remote serve --handler slurm`` end to end: a real serve process runs the jobs it
claims from the bus in pilot batches of a SlurmJobHandler on the real single-node Slurm of
scripts/services.sh; a client RemoteJobHandler sends a small pipeline whose remote result
goes to the next remote job. The batch is in squeue while jobs run, and gone once serve
stops. Skips where hither-slurm or Slurm is missing (fails with HITHER_REQUIRE_SERVICES=1)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest

import hither as hi
from hither.values.refs import StoredResult
from hither.testing.processes import wait_for_pids
from hither.testing.services import unavailable

import remote_funcs as rf

pytestmark = pytest.mark.timeout(240)


def _batches(work):
    """Slurm jobs (id, state) of pilots working in ``work``."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%j|%o"], capture_output=True, text=True, timeout=30).stdout
    return [tuple(line.split("|")[:2]) for line in out.splitlines()
            if "hither-pilot-" in line and str(work) in line]


def _wait_batches_gone(work, timeout=20.0):
    deadline = time.monotonic() + timeout
    while _batches(work):
        assert time.monotonic() < deadline, f"batches outlived serve: {_batches(work)}"
        time.sleep(0.2)


@pytest.fixture
def slurm_ready():
    pytest.importorskip("hither_slurm", reason="serve --handler slurm needs hither-slurm")
    from hither_slurm.batches import slurm_available

    why = slurm_available()
    if why is not None:
        unavailable(f"no Slurm here ({why}); start one with: bash scripts/services.sh slurm")


def test_serve_with_the_slurm_handler(slurm_ready, serve, db, store, tmp_path):
    work = tmp_path / "slurm-work"
    server = serve("resource", "--handler", "slurm", "--slurm-working-dir", str(work),
                   "--slurm-workers-per-batch", "2", "--slurm-cores-per-job", "1",
                   "--slurm-idle-timeout", "60", "--slurm-max-batches", "1")
    assert "capacity 2" in server.log()  # workers per batch x max batches
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    pid_file = str(tmp_path / "pids")
    try:
        with hi.Config(job_handler=jh):
            a = rf.rt_ones.run(n=100_000)          # stays in the store
            b = rf.rt_add.run(x=a, y=1.0)          # gets a's URI, on the cluster
            bad = rf.rt_fail.run(msg="bad input 7")
            slow = rf.rt_sleep_pid.run(t=5, pid_file=pid_file, x=11)
            np.testing.assert_array_equal(b.wait(180), np.full(100_000, 2.0))
            with pytest.raises(ValueError, match="bad input 7"):
                bad.wait(60)
            wait_for_pids(pid_file, 120)  # the slow job started
            running = _batches(work)
            assert running and all(state == "RUNNING" for _, state in running), running
            assert slow.wait(60) == 11
        assert isinstance(a._result, StoredResult)
        from hither.values.refs import _UNSET

        assert a._result._value is _UNSET, "a's result travelled through the client"
        ri = b.get_runtime_info()
        assert getattr(ri, "slurm_job_id", None) in {i for i, _ in running}
    finally:
        jh.shutdown()
    assert server.stop(signal.SIGTERM) == 0
    _wait_batches_gone(work)
    log = server.log()
    assert "start rt_add" in log and "end rt_add" in log


def _serve_cli(tmp_path, *args, pre=""):
    import sys

    env = dict(os.environ, HITHER_REMOTE_SECRET="x" * 32)
    code = f"import sys; {pre}from hither_remote.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, "serve", "--resource-id", "r", *args],
                          capture_output=True, text=True, timeout=60, env=env, cwd=str(tmp_path))


def test_handler_slurm_without_hither_slurm_names_the_package(tmp_path):
    # hither-slurm made unimportable in that process, as on a machine without it
    out = _serve_cli(tmp_path, "--handler", "slurm", "--slurm-working-dir", str(tmp_path / "w"),
                     pre="sys.modules['hither_slurm'] = None; ")
    assert out.returncode != 0 and "pip install hither-slurm" in out.stderr, out.stderr


def test_handler_slurm_needs_a_working_dir(tmp_path):
    pytest.importorskip("hither_slurm", reason="needs hither-slurm")
    out = _serve_cli(tmp_path, "--handler", "slurm")
    assert out.returncode != 0 and "--slurm-working-dir" in out.stderr, out.stderr


def test_serve_with_slurm_runs_container_jobs_in_its_pilots(slurm_ready, serve, db, store, tmp_path):
    """A container job sent to ``serve --handler slurm`` runs in its image inside a pilot
    batch (the pilot starts the container on its node), not beside serve."""
    try:
        from hither_container.docker_runner import client

        client().images.get(rf.IMAGE)
    except Exception as exc:  # noqa: BLE001 - no hither-container, engine or image
        unavailable(f"Docker or the image {rf.IMAGE} is missing (bash scripts/services.sh docker): {exc}")
    work = tmp_path / "slurm-work"
    server = serve("resource", "--handler", "slurm", "--slurm-working-dir", str(work),
                   "--slurm-workers-per-batch", "1", "--slurm-cores-per-job", "1",
                   "--slurm-idle-timeout", "30", "--slurm-max-batches", "1")
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=jh, container=True):
            job = rf.rt_where.run(x=5)
            inside = job.wait(180)
        assert inside["x"] == 5 and inside["nets"] == ["lo"], inside  # in a container, network none
        assert getattr(job.get_runtime_info(), "slurm_job_id", None), "the container job did not run in a batch"
    finally:
        jh.shutdown()
    assert server.stop(signal.SIGTERM) == 0
    _wait_batches_gone(work)

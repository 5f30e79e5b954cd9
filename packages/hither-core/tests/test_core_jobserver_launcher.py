"""``hither.outside.jobserver.JobServerLauncher`` (the ``Launcher`` behind
``JobHandler.job_dir_launcher()``): results, errors, timeouts, kills and a job server killed
mid-job, with real processes only."""
import os
import signal
import threading
import time

import pytest

import hither as hi
from hither.errors import HitherError, JobTimeoutError, WorkerDiedError
from hither.outside.jobdir import read_job_outputs
from hither.outside.jobserver import JobServerLauncher

from hither.testing.processes import alive, wait_dead, wait_for_pids
from test_core_jobserver import TREE, result, write_job

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=[False, True], ids=["fork-per-job", "reuse"])
def launcher(request):
    la = JobServerLauncher(capacity=2, reuse=request.param)
    yield la
    la.close()


def test_result_and_error(launcher, tmp_path):
    ok = write_job(tmp_path / "ok", "def f(x):\n    return x + 1\n", args={"x": 41})
    assert launcher.launch(ok, timeout=30) == 0 and result(ok) == 42
    bad = write_job(tmp_path / "bad", "def f():\n    raise ValueError('no good 17')\n")
    assert launcher.launch(bad, timeout=30) == 0
    outcome = read_job_outputs(bad, 0)
    assert isinstance(outcome.error, ValueError) and "no good 17" in str(outcome.error)


def test_a_server_is_started_once_and_reused(launcher, tmp_path):
    assert launcher.server is None  # lazily: nothing runs before the first launch
    dirs = [write_job(tmp_path / f"j{i}", "import os\ndef f():\n    return os.getppid()\n") for i in range(6)]
    codes = []
    threads = [threading.Thread(target=lambda d=d: codes.append(launcher.launch(d, None))) for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [0] * 6
    pid = launcher.server.proc.pid
    # each job ran in a fork of the one server
    assert all(result(d) == pid for d in dirs) and launcher.server.alive
    assert launcher.launch(dirs[0], None) == 0 and launcher.server.proc.pid == pid


def test_capacity_limits_runs_at_once(tmp_path):
    la = JobServerLauncher(capacity=1)
    try:
        a = write_job(tmp_path / "a", TREE, args={"pidfile": str(tmp_path / "a.pids"), "seconds": 1.0})
        b = write_job(tmp_path / "b", TREE, args={"pidfile": str(tmp_path / "b.pids"), "seconds": 0})
        ta = threading.Thread(target=la.launch, args=(a, None))
        ta.start()
        wait_for_pids(str(tmp_path / "a.pids"))
        tb = threading.Thread(target=la.launch, args=(b, None))
        tb.start()
        time.sleep(0.5)
        assert not (tmp_path / "b.pids").exists(), "a second job ran beside the first with capacity 1"
        ta.join(30)
        tb.join(30)
        assert result(a) == result(b) == "woke"
    finally:
        la.close()
    with pytest.raises(HitherError, match="positive integer"):
        JobServerLauncher(capacity=0)


def test_timeout_kills_the_tree_and_raises(launcher, tmp_path):
    d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
    t0 = time.monotonic()
    with pytest.raises(JobTimeoutError, match="ran past 1.5 s"):
        launcher.launch(d, timeout=1.5)
    assert time.monotonic() - t0 < 15
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert wait_dead(pids), f"processes of the timed-out job still run: {pids}"


def _launch_a_tree(launcher, tmp_path):
    """A TREE job (it and the child it starts sleep 120 s) launched from a thread: its job
    dir, the thread, the list its exit code goes to, and the two pids once both run."""
    d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
    codes = []
    t = threading.Thread(target=lambda: codes.append(launcher.launch(d, None)))
    t.start()
    return d, t, codes, wait_for_pids(str(tmp_path / "pids"))


def test_kill_stops_a_job_and_the_child_it_started(launcher, tmp_path):
    d, t, codes, pids = _launch_a_tree(launcher, tmp_path)
    assert all(alive(p) for p in pids)
    t0 = time.monotonic()
    launcher.kill(d)
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 2
    assert codes == [-signal.SIGKILL]
    assert wait_dead(pids), f"the killed job or its child still runs: {pids}"
    assert not os.path.exists(os.path.join(d, "result.json"))
    launcher.kill(d)  # nothing runs under that name any more: a no-op
    ok = write_job(tmp_path / "ok", "def f():\n    return 'next'\n")
    assert launcher.launch(ok, None) == 0 and result(ok) == "next"


def test_server_killed_mid_job_fails_the_run_promptly_and_the_next_gets_a_new_server(launcher, tmp_path):
    d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
    errors = []

    def run():
        try:
            launcher.launch(d, None)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    t = threading.Thread(target=run)
    t.start()
    wait_for_pids(str(tmp_path / "pids"))
    old = launcher.server.proc.pid
    os.kill(old, signal.SIGKILL)
    t.join(10)
    assert not t.is_alive(), "launch hung after its job server died"
    assert len(errors) == 1 and isinstance(errors[0], WorkerDiedError), errors
    assert "died" in str(errors[0])
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert wait_dead(pids), f"jobs of a killed server still run: {pids}"
    ok = write_job(tmp_path / "ok", "def f():\n    return 5\n")
    assert launcher.launch(ok, 30) == 0 and result(ok) == 5
    assert launcher.server.proc.pid != old


def test_close_stops_running_jobs_and_refuses_more(tmp_path):
    la = JobServerLauncher(capacity=1)
    d, t, codes, pids = _launch_a_tree(la, tmp_path)
    la.close()
    t.join(15)
    assert codes and codes[0] != 0
    assert wait_dead(pids)
    with pytest.raises(HitherError, match="closed"):
        la.launch(d, None)


def test_handlers_give_job_server_launchers():
    la = hi.DefaultJobHandler().job_dir_launcher()
    assert isinstance(la, JobServerLauncher) and la.capacity == 1 and la.reuse
    la.close()
    jh = hi.ParallelJobHandler(3)
    try:
        la = jh.job_dir_launcher()
        assert isinstance(la, JobServerLauncher) and la.capacity == 3 and la.reuse
        la.close()
    finally:
        jh.shutdown()


def test_hidden_env_is_not_seen_by_jobs_nor_their_server(tmp_path, monkeypatch):
    """``hidden_env``: names of environment variables the jobs must not see (a compute
    resource's secret); the server, their parent, starts without them too."""
    monkeypatch.setenv("HITHER_TEST_HIDDEN", "do-not-show-0123")
    monkeypatch.setenv("HITHER_TEST_SHOWN", "fine")
    code = ("import os\ndef f():\n    parent = open('/proc/%d/environ' % os.getppid(), 'rb').read().decode()\n"
            "    return [os.environ.get('HITHER_TEST_HIDDEN'), os.environ.get('HITHER_TEST_SHOWN'),\n"
            "            'do-not-show' in parent]\n")
    la = JobServerLauncher(capacity=1, hidden_env=["HITHER_TEST_HIDDEN"])
    try:
        job = write_job(tmp_path / "j", code)
        assert la.launch(job, timeout=30) == 0 and result(job) == [None, "fine", False]
    finally:
        la.close()
    la = JobServerLauncher(capacity=1)  # by default the environment passes on whole
    try:
        job = write_job(tmp_path / "k", code)
        assert la.launch(job, timeout=30) == 0 and result(job) == ["do-not-show-0123", "fine", True]
    finally:
        la.close()

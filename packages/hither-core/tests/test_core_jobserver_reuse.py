"""The job server's reused job processes (``--reuse``, ``JobServer(reuse=N)``): what carries
from one job to the next of a code bundle, what must not, and when a process is not
reused; real processes only."""
import json
import os
import signal
import time

import pytest

from hither.outside.jobserver import JobServer
from hither.testing.processes import alive, wait_dead, wait_for_pids
from test_core_jobserver import TREE, result, write_job

pytestmark = pytest.mark.timeout(60)

# a module global counts the jobs this process ran of this bundle
COUNTER = """
    import os
    runs = []
    def f(tag):
        runs.append(tag)
        return [os.getpid(), len(runs)]
"""


def run(server, job_dir, **kw):
    end = server.submit(job_dir, **kw).wait(30)
    assert (end.reason, end.exit_code) == ("exited", 0), end
    return result(job_dir)


def children(pid):
    """Live (non-zombie) child pids of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


@pytest.fixture
def server():
    s = JobServer(reuse=2).start()
    yield s
    s.close()


def test_jobs_of_one_bundle_share_a_process_and_other_bundles_do_not(server, tmp_path):
    a = [write_job(tmp_path / f"a{i}", COUNTER, args={"tag": i}) for i in range(3)]
    b = write_job(tmp_path / "b", COUNTER.replace("runs = []", "runs = ['other']"), args={"tag": 9})
    first = run(server, a[0])
    assert run(server, a[1]) == [first[0], 2]  # same process, its module kept
    other = run(server, b)
    assert other[0] != first[0] and other[1] == 2  # its own process, its own module
    assert run(server, a[2]) == [first[0], 3]
    # without reuse every job gets a fresh fork
    with JobServer() as fresh:
        pids = {run(fresh, d)[0] for d in a}
        assert len(pids) == 3 and all(run(fresh, d)[1] == 1 for d in a)


def test_what_a_job_changes_of_its_process_is_put_back_before_the_next(server, tmp_path):
    messy = """
        import os, signal, sys
        def f(tag):
            seen = {"A": os.environ.get("A"), "B": os.environ.get("B"), "cwd": os.getcwd(),
                    "path0": sys.path[0], "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
                    "alarm": signal.alarm(0), "umask": os.umask(0o077)}
            signal.alarm(300)
            os.environ["B"] = "left by " + tag
            os.chdir("/")
            sys.path.insert(0, "/nowhere")
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("console of", tag)
            return [os.getpid(), seen]
    """
    d1 = write_job(tmp_path / "j1", messy, args={"tag": "one"})
    d2 = write_job(tmp_path / "j2", messy, args={"tag": "two"})
    pid1, seen1 = run(server, d1, env={"A": "1"}, log=str(tmp_path / "one.log"))
    pid2, seen2 = run(server, d2, log=str(tmp_path / "two.log"))
    assert pid1 == pid2
    assert seen1["A"] == "1" and seen2["A"] is None  # a job's env is its own
    assert seen2["B"] is None  # what the job set is gone
    assert seen2["cwd"] == d2 and seen2["path0"] != "/nowhere" and seen2["sigterm"]
    assert seen2["alarm"] == 0 and seen2["umask"] == seen1["umask"] != 0o077
    assert "console of one" in (tmp_path / "one.log").read_text()
    assert "console of" not in (tmp_path / "one.log").read_text().replace("console of one", "")
    assert "console of two" in (tmp_path / "two.log").read_text()


def test_a_job_that_leaves_a_thread_running_is_not_reused(server, tmp_path):
    src = """
        import os, threading, time
        def f(stay):
            if stay:
                threading.Thread(target=time.sleep, args=(120,)).start()
            return os.getpid()
    """
    d = write_job(tmp_path / "t", src, args={"stay": True})
    pid = run(server, d)
    assert wait_dead([pid]), "the process with a job's thread still running was kept"
    d2 = write_job(tmp_path / "t2", src, args={"stay": False})
    assert run(server, d2) != pid


@pytest.mark.parametrize("how", ["cancel", "timeout", "crash"])
def test_a_killed_or_crashed_job_process_is_replaced(server, tmp_path, how):
    src = TREE.replace("time.sleep(seconds)", "if seconds < 0: os._exit(4)\n        time.sleep(seconds)")
    d0 = write_job(tmp_path / "warm", src, args={"pidfile": str(tmp_path / "p0"), "seconds": 0})
    assert run(server, d0) == "woke"
    warm = int((tmp_path / "p0").read_text().split()[0])
    if how == "crash":
        bad = write_job(tmp_path / "bad", src, args={"pidfile": str(tmp_path / "pids"), "seconds": -1})
        end = server.submit(bad).wait(30)
        assert (end.exit_code, end.reason) == (4, "exited")
    else:
        d = write_job(tmp_path / "j", src, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
        r = server.submit(d, timeout=1.5 if how == "timeout" else None)
        wait_for_pids(str(tmp_path / "pids"))
        if how == "cancel":
            r.kill()
        assert r.wait(15).reason == ("cancelled" if how == "cancel" else "timeout")
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert pids[0] == warm  # it ran in the reused process
    assert wait_dead(pids), "the job's processes outlived it"
    d1 = write_job(tmp_path / "after", src, args={"pidfile": str(tmp_path / "p1"), "seconds": 0})
    assert run(server, d1) == "woke"  # a fresh process, and it works
    assert int((tmp_path / "p1").read_text().split()[0]) not in pids


def test_idle_processes_are_bounded_and_die_with_the_server(tmp_path):
    server = JobServer(reuse=1).start()
    try:
        bundles = [write_job(tmp_path / f"b{i}", COUNTER.replace("runs = []", f"runs = []  # bundle {i}"), args={"tag": i}) for i in range(4)]
        pids = [run(server, d)[0] for d in bundles]
        assert len(set(pids)) == 4
        deadline = time.monotonic() + 10
        while len(children(server.proc.pid)) > 1:
            assert time.monotonic() < deadline, f"idle job processes kept: {children(server.proc.pid)}"
            time.sleep(0.05)
        assert children(server.proc.pid) == [pids[-1]]
        assert run(server, bundles[-1])[0] == pids[-1]
    finally:
        server.close()
    assert wait_dead(pids)


def test_a_killed_server_ends_its_idle_and_running_job_processes(tmp_path):
    server = JobServer(reuse=2).start()
    try:
        idle = run(server, write_job(tmp_path / "idle", COUNTER, args={"tag": 0}))[0]
        d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
        r = server.submit(d)
        wait_for_pids(str(tmp_path / "pids"))
        assert alive(idle)
        os.kill(server.proc.pid, signal.SIGKILL)
        assert r.wait(15).reason == "server-died"
        pids = [idle] + [int(p) for p in (tmp_path / "pids").read_text().split()]
        assert wait_dead(pids), f"job processes of a killed server still run: {pids}"
    finally:
        server.close()


def test_command_line_reuse_option(tmp_path):
    import subprocess
    import sys

    dirs = [write_job(tmp_path / f"j{i}", COUNTER, args={"tag": i}) for i in range(3)]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hither.runtime", "--serve", "--reuse", "1"],
                          input="\n".join(dirs) + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # at end of input it drains, then ends its job processes at once (a process that ended
    # its job after end of input once waited for the 10 s shutdown grace)
    assert time.monotonic() - t0 < 6
    ended = [json.loads(x) for x in proc.stdout.splitlines() if '"ended"' in x]
    assert len(ended) == 3 and all(e["exit_code"] == 0 for e in ended)
    bad = subprocess.run([sys.executable, "-m", "hither.runtime", "--serve", "--reuse", "many"],
                         input="", capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--reuse N" in bad.stderr


def test_a_fork_the_job_made_that_returns_takes_no_further_jobs(server, tmp_path):
    """A job's fork that returns from the job (instead of exiting) comes back into the
    runner; in a reused process it must end there, not answer for the process or read its
    next job."""
    src = """
        import os, time
        def f(tag):
            if tag == "fork":
                if os.fork() == 0:
                    return "from the fork"
                time.sleep(1)  # the fork is through the runner by now
            return [os.getpid(), tag]
    """
    d = write_job(tmp_path / "fork", src, args={"tag": "fork"})
    end = server.submit(d).wait(30)
    assert end.exit_code == 0
    pid = json.load(open(os.path.join(d, "runtime.json")))["pid"]
    assert result(d) == [pid, "fork"]  # the job's end is the job's, not its fork's
    for i in range(5):
        nxt = write_job(tmp_path / f"n{i}", src, args={"tag": f"n{i}"})
        assert run(server, nxt) == [pid, f"n{i}"]


def test_a_process_that_grew_by_a_gib_is_not_reused(server, tmp_path):
    """What a job keeps (here 1.1 GB in a module global) stays with the process: one that
    grew by 1 GiB since its first job ends after its job instead of running the next."""
    src = """
        import os
        kept = []
        def f(grow):
            if grow:
                kept.append(b"x" * (1100 << 20))  # touched pages: resident
            return os.getpid()
    """
    first = run(server, write_job(tmp_path / "small", src, args={"grow": False}))
    assert run(server, write_job(tmp_path / "big", src, args={"grow": True})) == first
    assert wait_dead([first]), "the process that grew by 1.1 GB was kept"
    assert run(server, write_job(tmp_path / "after", src, args={"grow": False})) != first


def test_a_process_ends_after_its_thousandth_job(server, tmp_path):
    dirs = [write_job(tmp_path / f"j{i}", COUNTER, args={"tag": i}) for i in range(2)]
    pids = []
    for i in range(1001):
        pid, count = run(server, dirs[i % 2])
        pids.append(pid)
    assert len(set(pids[:1000])) == 1 and count == 1  # the 1001st: a fresh process
    assert pids[1000] != pids[0] and wait_dead([pids[0]])

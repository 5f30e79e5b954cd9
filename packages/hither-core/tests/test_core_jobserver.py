"""The job server (``python -m hither.runtime --serve`` and ``hither.outside.jobserver.JobServer``):
many job directories in one long-lived process, each in a clean fork; real processes only."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

from hither.outside.jobserver import JobServer
from hither.testing.processes import wait_dead, wait_for_pids

pytestmark = pytest.mark.timeout(60)


def write_job(job_dir, module_source, qualname="f", args=None, module="mymod"):
    """A job directory whose code bundle is one importable module ``module``."""
    os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)
    spec = {"job_id": "j", "job_hash": "0" * 40, "function_name": qualname, "function_version": "0",
            "module": module, "qualname": qualname, "module_relpath": module + ".py",
            "sys_paths": [""], "handler": "jobserver-test"}
    with open(os.path.join(job_dir, "spec.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(job_dir, "args.json"), "w") as f:
        json.dump(args or {}, f)
    with zipfile.ZipFile(os.path.join(job_dir, "code.zip"), "w") as z:
        # a fixed time stamp: the same source makes the same bundle (sha1), whenever written
        z.writestr(zipfile.ZipInfo(module + ".py", date_time=(2020, 1, 1, 0, 0, 0)), textwrap.dedent(module_source))
    return str(job_dir)


def result(job_dir):
    with open(os.path.join(job_dir, "result.json")) as f:
        return json.load(f)["value"]


# a job that starts a grandchild (sleep), records both pids, then sleeps itself
TREE = """
    import os, subprocess, time
    def f(pidfile, seconds):
        child = subprocess.Popen(["sleep", "120"])
        with open(pidfile + ".tmp", "w") as fh:
            fh.write("%d %d" % (os.getpid(), child.pid))
        os.replace(pidfile + ".tmp", pidfile)
        time.sleep(seconds)
        return "woke"
"""


@pytest.fixture(params=[0, 2], ids=["fork-per-job", "reuse"])
def server(request):
    s = JobServer(reuse=request.param).start()
    yield s
    s.close()


def test_two_bundles_sharing_a_module_name_each_run_their_own_code(server, tmp_path):
    # the same module name "mymod" in two code bundles; one interpreter would cache the first
    a = write_job(tmp_path / "a", "def f(x):\n    return ('bundle-a', x)\n", args={"x": 1})
    b = write_job(tmp_path / "b", "def f(x):\n    return ('bundle-b', x * 10)\n", args={"x": 2})
    for d in (a, b, a, b):
        end = server.submit(d).wait(30)
        assert end.reason == "exited" and end.exit_code == 0, end
    assert result(a) == {"_hither": "tuple", "items": ["bundle-a", 1]}
    assert result(b) == {"_hither": "tuple", "items": ["bundle-b", 20]}
    # concurrently too
    runs = [server.submit(d) for d in (a, b)]
    assert [r.wait(30).exit_code for r in runs] == [0, 0]
    assert result(b)["items"][0] == "bundle-b"


def test_a_bundle_is_unpacked_once_per_server_and_removed_with_it(tmp_path):
    # each job reports where its module was loaded from: one folder for every job of the
    # bundle, outside the job directories, and gone when the server exits
    src = "import os\ndef f():\n    return os.path.dirname(os.path.abspath(__file__))\n"
    server = JobServer().start()
    try:
        dirs = [write_job(tmp_path / f"j{i}", src) for i in range(3)]
        for d in dirs:
            end = server.submit(d).wait(30)
            assert end.reason == "exited" and end.exit_code == 0, end
        where = {result(d) for d in dirs}
        assert len(where) == 1, where
        code_dir = where.pop()
        assert os.path.isdir(code_dir) and not any(code_dir.startswith(d) for d in dirs)
        assert not any(os.path.exists(os.path.join(d, "code")) for d in dirs)
        other = write_job(tmp_path / "other", src.replace("return", "x = 1\n    return"))
        assert server.submit(other).wait(30).exit_code == 0 and result(other) != code_dir
    finally:
        server.close()
    assert not os.path.exists(code_dir), "the server's unpacked bundles outlived it"


def test_a_killed_servers_bundles_are_swept_by_the_next_server(tmp_path):
    # a server killed with SIGKILL cannot remove its folder; the next one on this host does,
    # and leaves the folders of servers that still run
    import socket

    env = dict(os.environ, TMPDIR=str(tmp_path))
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"hither-code-{host}-{dead.pid}-abc"
    live = tmp_path / f"hither-code-{host}-{os.getpid()}-abc"
    other = tmp_path / "hither-code-elsewhere-1-abc"  # another host's (a shared TMPDIR)
    for d in (stale, live, other):
        (d / "bundle").mkdir(parents=True)
    killed = JobServer(env=env).start()
    mine = [p for p in os.listdir(tmp_path) if f"-{killed.proc.pid}-" in p]
    assert len(mine) == 1
    os.kill(killed.proc.pid, signal.SIGKILL)
    killed.proc.wait(10)
    killed.close()
    assert (tmp_path / mine[0]).exists()  # nobody removed it
    with JobServer(env=env):
        pass
    assert not stale.exists() and not (tmp_path / mine[0]).exists()
    assert live.exists() and other.exists()


def test_a_job_that_closes_every_descriptor_still_ends_normally(server, tmp_path):
    # the job process watches the server through an inherited pipe; a job that closes it
    # (as daemonizing code does) must neither be killed nor hang
    src = "import os\ndef f():\n    os.closerange(3, 4096)\n    return 'closed'\n"
    d = write_job(tmp_path / "j", src)
    end = server.submit(d).wait(30)
    assert end.reason == "exited" and end.exit_code == 0, end
    assert result(d) == "closed" and server.alive


def test_server_never_imports_user_code(server, tmp_path):
    # a module that records which process imported it: only job processes, never the server
    src = """
        import os
        open(os.path.join(os.environ["MARK_DIR"], "imported-%d" % os.getpid()), "w").close()
        def f():
            return os.getpid()
    """
    d = write_job(tmp_path / "j", src)
    runs = [server.submit(d, env={"MARK_DIR": str(tmp_path)}).wait(30) for _ in range(3)]
    assert all(r.exit_code == 0 for r in runs)
    marks = [p for p in os.listdir(tmp_path) if p.startswith("imported-")]
    # imported once per job process: each job's own fork, or one reused process
    assert len(marks) == (1 if server.reuse else 3) and f"imported-{server.proc.pid}" not in marks


def test_timeout_kills_the_process_tree(server, tmp_path):
    d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
    t0 = time.monotonic()
    end = server.submit(d, timeout=1.5).wait(30)
    assert end.reason == "timeout" and end.exit_code == -signal.SIGKILL
    assert 1.4 < time.monotonic() - t0 < 15
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert wait_dead(pids), f"processes of the timed-out job still run: {pids}"
    assert not (tmp_path / "j" / "result.json").exists()


def test_cancel_kills_the_running_job_and_the_server_goes_on(server, tmp_path):
    d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
    run = server.submit(d)
    wait_for_pids(str(tmp_path / "pids"))
    assert server.running() == [d]
    run.kill()
    end = run.wait(10)
    assert end.reason == "cancelled"
    assert wait_dead([int(p) for p in (tmp_path / "pids").read_text().split()])
    assert not server.cancel(d)  # nothing running under that name any more
    ok = write_job(tmp_path / "ok", "def f():\n    return 7\n")
    assert server.submit(ok).wait(30).exit_code == 0 and result(ok) == 7


@pytest.mark.parametrize("crash, code, reason", [
    ("os._exit(5)", 5, "exited"),
    ("ctypes.string_at(0)", -signal.SIGSEGV, "signal"),
    ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL, "signal"),
])
def test_a_crashing_job_ends_only_itself(server, tmp_path, crash, code, reason):
    src = f"import ctypes, os, signal\ndef f():\n    {crash}\n"
    d = write_job(tmp_path / "crash", src)
    end = server.submit(d).wait(30)
    assert (end.exit_code, end.reason) == (code, reason)
    assert not (tmp_path / "crash" / "result.json").exists()
    assert server.alive
    ok = write_job(tmp_path / "ok", "def f():\n    return 'still here'\n")
    assert server.submit(ok).wait(30).exit_code == 0 and result(ok) == "still here"


def test_what_a_finished_job_left_running_dies_with_it(server, tmp_path):
    src = """
        import subprocess
        def f(pidfile):
            p = subprocess.Popen(["sleep", "120"])
            open(pidfile, "w").write(str(p.pid))
            return "done"
    """
    d = write_job(tmp_path / "j", src, args={"pidfile": str(tmp_path / "pid")})
    assert server.submit(d).wait(30).exit_code == 0 and result(d) == "done"
    assert wait_dead([int((tmp_path / "pid").read_text())])


def test_an_orphan_in_a_session_of_its_own_dies_with_the_job(server, tmp_path):
    """A double fork: the job's child starts ``sleep`` in a new session and exits. The
    runner is the orphan's subreaper and kills it before it writes the job's outcome."""
    src = """
        import subprocess, sys
        def f(pidfile):
            out = subprocess.run([sys.executable, "-c", "import subprocess as s; print(s.Popen("
                                  "['sleep', '120'], start_new_session=True, stdout=s.DEVNULL, "
                                  "stderr=s.DEVNULL).pid)"], capture_output=True, text=True).stdout
            open(pidfile, "w").write(out.strip())
            return "done"
    """
    d = write_job(tmp_path / "j", src, args={"pidfile": str(tmp_path / "pid")})
    assert server.submit(d).wait(30).exit_code == 0 and result(d) == "done"
    assert wait_dead([int((tmp_path / "pid").read_text())], 0.5)


def test_server_killed_ends_its_jobs(tmp_path):
    server = JobServer().start()
    try:
        d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
        run = server.submit(d)
        wait_for_pids(str(tmp_path / "pids"))
        os.kill(server.proc.pid, signal.SIGKILL)
        end = run.wait(15)
        assert end.reason == "server-died" and end.exit_code is None
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
        assert wait_dead(pids), f"jobs of a killed server still run: {pids}"
        assert not server.alive
        with pytest.raises(Exception, match="closed or has died"):
            server.submit(d)
    finally:
        server.close()


def test_close_kills_running_jobs(tmp_path):
    server = JobServer().start()
    d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
    run = server.submit(d)
    wait_for_pids(str(tmp_path / "pids"))
    server.close()
    assert run.wait(10).reason == "shutdown"
    assert wait_dead([int(p) for p in (tmp_path / "pids").read_text().split()])


def test_console_output_reaches_the_log_while_the_job_runs(server, tmp_path):
    src = """
        import sys, time
        def f(flag):
            print("first line", flush=True)
            print("to stderr", file=sys.stderr, flush=True)
            import os
            while not os.path.exists(flag):
                time.sleep(0.02)
            print("second line")
            return 1
    """
    flag = tmp_path / "go"
    d = write_job(tmp_path / "j", src, args={"flag": str(flag)})
    log = tmp_path / "console.log"
    run = server.submit(d, log=str(log))
    deadline = time.monotonic() + 20
    while "first line" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the running job's output never reached its log"
        time.sleep(0.02)
    assert not run.done()
    flag.write_text("")
    assert run.wait(30).exit_code == 0
    text = log.read_text()
    assert "to stderr" in text and "second line" in text
    with open(os.path.join(d, "runtime.json")) as f:
        assert "second line" in json.load(f)["stdout"]


def test_command_line_server_reads_paths_and_drains_at_end_of_input(tmp_path):
    dirs = [write_job(tmp_path / f"j{i}", f"def f():\n    return {i}\n") for i in range(3)]
    lines = "\n".join(dirs[:2]) + "\n" + json.dumps({"op": "run", "job_dir": dirs[2]}) + '\n{"op": "nope"}\n'
    proc = subprocess.run([sys.executable, "-m", "hither.runtime", "--serve"], input=lines,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines()]
    assert events[0]["event"] == "ready"
    ended = {e["job_dir"]: e for e in events if e["event"] == "ended"}
    assert set(ended) == set(dirs) and all(e["exit_code"] == 0 for e in ended.values())
    assert [result(d) for d in dirs] == [0, 1, 2]
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and "bad request" in errors[0]["message"]
    proc = subprocess.run([sys.executable, "-m", "hither.runtime", "--serve", "--on-eof", "sometimes"],
                          input="", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_unusable_job_dir_and_duplicate_submit(server, tmp_path):
    assert server.submit(str(tmp_path / "missing")).wait(30).exit_code == 3
    d = write_job(tmp_path / "j", TREE, args={"pidfile": str(tmp_path / "pids"), "seconds": 120})
    run = server.submit(d)
    with pytest.raises(Exception, match="already running"):
        server.submit(d)
    run.kill()
    assert run.wait(10).reason == "cancelled"

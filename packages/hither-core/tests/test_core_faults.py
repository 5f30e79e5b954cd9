"""Faults of the local handlers (issue 8, "Hangs and lost control"): real worker processes,
real signals, real child programs. Every test here is checked for process hygiene: after
it, no process it started (found by an environment tag they inherit) is left, and no
shared-memory buffer of this test is left in /dev/shm."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

import hither as hi
from hither.local import transfer
from hither.errors import (ConfigError, DependencyFailedError, JobCancelledException,
                           JobTimeoutError, WorkerDiedError)
from hither.runtime import JobExitError
from hither.runtime.processes import pid_exists
from hither.testing.processes import alive, wait_for_file

from fault_funcs import (fault_cyclic_result, fault_double_fork, fault_exit, fault_fail, fault_fork_then_die,
                         fault_inc, fault_leave_child, fault_pid, fault_sleep, fault_sleep_with_child,
                         fault_weird_result)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process checks read /proc (Linux)")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TAG_VAR = "HITHER_FAULT_TEST_TAG"


# ------------------------------------------------------------------ process hygiene
def _tagged(tag):
    """{pid: command line} of the live processes that carry this test's tag."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in env and alive(entry):
            found[int(entry)] = cmd
    return found


def _buffers():
    return {n for n in os.listdir(transfer.SHM_DIR) if n.startswith("hither-") and n.endswith(".buf")}


def _owner(name):
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return None


@pytest.fixture(autouse=True)
def hygiene(monkeypatch):
    """Tag every process the test starts (through the environment they inherit); after the
    test, none may be left, nor any new hither buffer of this process or of a dead owner.
    The test's buffers go to a folder of its own ($HITHER_SHM_DIR, inherited by the workers
    and programs it starts): another test running at the same time (pytest-xdist) whose
    killed program left a buffer must not count here."""
    tag = uuid.uuid4().hex
    os.environ[TAG_VAR] = tag
    own = os.path.join(transfer.SHM_DIR, f"hither-test-{tag}")
    os.mkdir(own)
    monkeypatch.setenv("HITHER_SHM_DIR", own)
    monkeypatch.setattr(transfer, "SHM_DIR", own)
    before = _buffers()
    yield
    del os.environ[TAG_VAR]
    hi.reset()
    from hither.plugins.lifetime import live_handlers

    for h in live_handlers():
        h.shutdown(wait=True)
    deadline = time.monotonic() + 10
    left = _tagged(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _tagged(tag)
    for pid in left:  # do not leave them to the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"processes left after the test: {left}"
    leaked = [n for n in _buffers() - before
              if _owner(n) == os.getpid() or (_owner(n) and not pid_exists(_owner(n)))]
    for n in leaked:
        os.unlink(os.path.join(transfer.SHM_DIR, n))
    shutil.rmtree(own, ignore_errors=True)
    assert not leaked, f"hither buffers left in {transfer.SHM_DIR}: {leaked}"


def _assert_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, \
            f"still alive after {timeout} s: {[p for p in pids if alive(p)]}"
        time.sleep(0.02)


def _program(script, tmp_path):
    """A child Python program in its own session and process group (as a terminal would
    run it), so that signalling its group does not reach pytest."""
    code = f"import sys; sys.path.insert(0, {TESTS_DIR!r})\n" + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


# ------------------------------------------------------------------ 1. job_timeout values
@pytest.mark.timeout(60)
@pytest.mark.parametrize("timeout", [30 * 86400, 1e12, math.inf])
def test_far_or_infinite_job_timeout_lets_jobs_finish(make_pjh, timeout):
    """Past ~24.8 days the I/O loop's wait overflowed (every 10 ms, no job ever ended)."""
    with hi.Config(job_handler=make_pjh(1), job_timeout=timeout):
        jobs = [fault_inc.run(x=i) for i in range(3)]
    assert [j.wait(timeout=20) for j in jobs] == [1, 2, 3]


@pytest.mark.timeout(30)
def test_infinite_job_timeout_means_no_limit_everywhere():
    with hi.Config(job_timeout=5):
        with hi.Config(job_timeout=math.inf):  # overrides the outer limit: none
            assert hi.config.current().job_timeout is None
            assert fault_inc.run(x=1).wait() == 2  # the DefaultJobHandler accepts no limit


@pytest.mark.parametrize("bad", [math.nan, -1, -math.inf, 0, "10", True])
def test_bad_job_timeout_is_refused_at_config(bad):
    with pytest.raises(ConfigError, match=r"job_timeout=\.\.\.\) must be a positive number"):
        hi.Config(job_timeout=bad)


# ------------------------------------------------------------------ 2. worker death
@pytest.mark.timeout(60)
def test_worker_death_is_seen_while_its_forked_child_holds_the_socket(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh, retry=False):  # the one death, seen in time
        job = fault_fork_then_die.run()
        t = time.monotonic()
        with pytest.raises(WorkerDiedError, match="exited with code 7"):
            job.wait(timeout=20)
        assert time.monotonic() - t < 10
        assert fault_inc.run(x=1).wait(timeout=20) == 2  # a new worker took over


# ------------------------------------------------------------------ 3. a job ending itself
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how, named", [("sys.exit", "SystemExit(3)"), ("argparse", "SystemExit(2)"),
                                        ("KeyboardInterrupt", "KeyboardInterrupt('raised by the job')")])
def test_a_job_ending_itself_is_a_job_error(handler, how, named):
    with hi.Config(job_handler=handler):
        job = fault_exit.run(how=how)
        with pytest.raises(JobExitError) as info:
            job.wait(timeout=20)
        assert named in str(info.value)
        assert info.value.exit_type == named.split("(")[0]
        if how == "argparse":
            assert "invalid int value" in job.get_runtime_info().stderr
        assert fault_inc.run(x=1).wait(timeout=20) == 2  # the program (and worker) go on


@pytest.mark.timeout(60)
def test_a_job_ending_itself_does_not_end_a_program(tmp_path):
    p = _program("""
        import hither as hi
        from fault_funcs import fault_exit
        for jh in (None, hi.ParallelJobHandler(1)):
            with hi.Config(job_handler=jh):
                for how in ("sys.exit", "argparse", "KeyboardInterrupt"):
                    try:
                        fault_exit.run(how=how).wait(timeout=30)
                    except Exception as exc:
                        print("ERROR", type(exc).__name__, exc.exit_type, flush=True)
        print("END", flush=True)
    """, tmp_path)
    out, err = p.communicate(timeout=50)
    assert p.returncode == 0, err
    assert out.split("\n").count("ERROR JobExitError SystemExit") == 4, out
    assert out.split("\n").count("ERROR JobExitError KeyboardInterrupt") == 2, out
    assert out.rstrip().endswith("END")


# ------------------------------------------------------------------ 4. Ctrl-C at a terminal
@pytest.mark.timeout(60)
def test_ctrl_c_at_the_terminal_does_not_reach_the_workers(tmp_path):
    """SIGINT to the program's process group (what a terminal's Ctrl-C does): the program
    gets KeyboardInterrupt and decides; its running job finishes on its worker."""
    p = _program("""
        import time
        import hither as hi
        from fault_funcs import fault_sleep
        with hi.Config(job_handler=hi.ParallelJobHandler(2)):
            job = fault_sleep.run(seconds=3, value=42)
        while job.get_status().value != "running":
            time.sleep(0.02)
        try:
            open("ready", "w").close()  # inside the try: the signal may come at once
            for _ in range(600):  # short sleeps: CPython notes a signal that lands between two
                time.sleep(0.1)   # bytecodes just before a long sleep only when the sleep returns
            print("NOT INTERRUPTED", flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
        print("RESULT", job.wait(timeout=30), flush=True)
    """, tmp_path)
    wait_for_file(str(tmp_path / "ready"))
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=40)
    assert p.returncode == 0, err
    assert out.split("\n")[:2] == ["INTERRUPTED", "RESULT 42"], (out, err)


@pytest.mark.timeout(60)
def test_uncaught_ctrl_c_ends_the_program_and_its_workers(tmp_path):
    pid_file = str(tmp_path / "pids")
    p = _program(f"""
        import hither as hi
        from fault_funcs import fault_sleep_with_child
        with hi.Config(job_handler=hi.ParallelJobHandler(2)):
            job = fault_sleep_with_child.run(pid_file={pid_file!r})
        hi.wait()
    """, tmp_path)
    pids = [int(x) for x in wait_for_file(pid_file).split()]
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode != 0 and "KeyboardInterrupt" in err, (out, err)
    _assert_gone(pids)


@pytest.mark.timeout(60)
def test_a_program_that_exits_with_a_job_running_takes_its_workers_along(tmp_path):
    """At interpreter exit, handlers still alive are shut down (``hither.plugins.lifetime``): the
    program ends at once, its workers and the job's child with it."""
    pid_file = str(tmp_path / "pids")
    p = _program(f"""
        import os, sys, time
        import hither as hi
        from fault_funcs import fault_sleep_with_child
        jh = hi.ParallelJobHandler(2)
        with hi.Config(job_handler=jh):
            job = fault_sleep_with_child.run(pid_file={pid_file!r})
        while not os.path.exists({pid_file!r}):
            time.sleep(0.02)
        print("EXITING", flush=True)
        sys.exit(0)
    """, tmp_path)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and out.strip() == "EXITING", (out, err)
    _assert_gone([int(x) for x in open(pid_file).read().split()])


# ------------------------------------------------------------------ 5. the job's process tree
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_and_timeout_kill_the_jobs_subprocesses(make_pjh, tmp_path, how):
    pid_file = str(tmp_path / "pids")
    with hi.Config(job_handler=make_pjh(1), job_timeout=(2 if how == "timeout" else None)):
        job = fault_sleep_with_child.run(pid_file=pid_file)
        worker, child = (int(x) for x in wait_for_file(pid_file).split())
        assert alive(child)
        if how == "cancel":
            job.cancel()
        with pytest.raises(JobCancelledException if how == "cancel" else JobTimeoutError):
            job.wait(timeout=20)
        _assert_gone([worker, child], 5)
        assert fault_inc.run(x=1).wait(timeout=20) == 2


@pytest.mark.timeout(60)
def test_processes_a_finished_job_left_running_are_killed(make_pjh, tmp_path):
    pid_file = str(tmp_path / "pids")
    with hi.Config(job_handler=make_pjh(1)):
        worker = fault_leave_child.run(pid_file=pid_file).wait(timeout=20)
        pids = [int(x) for x in wait_for_file(pid_file).split()]
        _assert_gone(pids, 5)  # the worker killed them after the job returned
        assert fault_pid.run().wait(timeout=20) == worker  # and goes on


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["python", "shell"])
def test_orphans_a_parallel_job_leaves_are_gone_when_it_returns(make_pjh, tmp_path, how):
    """A job whose child exits after starting a grandchild in a session of its own: the
    worker is the orphan's subreaper, so it kills it before reporting the job done."""
    pid_file = str(tmp_path / "pids")
    with hi.Config(job_handler=make_pjh(1)):
        worker = fault_double_fork.run(pid_file=pid_file, how=how).wait(timeout=30)
        orphan, parent, session = (int(x) for x in wait_for_file(pid_file).split())
        assert parent == worker and session == orphan  # an orphan of its own session
        assert not alive(orphan), "the orphaned sleep outlived its job"
        assert fault_pid.run().wait(timeout=20) == worker  # the worker goes on


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["python", "shell"])
def test_orphans_a_job_directory_leaves_are_gone_when_its_runner_ends(tmp_path, how):
    """The same through the runner (``python runner.py JOB_DIR``, as SubprocessLauncher,
    the job server and compute resources run it): gone before the runner exits."""
    from hither.outside.path import SubprocessLauncher, prepare
    from hither.testing.container_conformance import ParkedHandler

    pid_file = str(tmp_path / "pids")
    with hi.Config(job_handler=ParkedHandler()):
        job = fault_double_fork.run(pid_file=pid_file, how=how)
    job_dir = prepare(job, str(tmp_path))
    job.cancel()
    assert SubprocessLauncher().launch(job_dir, 30) == 0
    orphan, parent, session = (int(x) for x in wait_for_file(pid_file).split())
    assert session == orphan
    assert not alive(orphan), "the orphaned sleep outlived its runner"
    assert not os.path.exists(os.path.join(job_dir, "error.json"))


# ------------------------------------------------------------------ 6. the program killed
@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_program_takes_its_workers_and_their_children_along(tmp_path, sig):
    pid_file = str(tmp_path / "pids")
    p = _program(f"""
        import time
        import numpy as np
        import hither as hi
        from fault_funcs import fault_sleep_with_child, fault_sleep
        ballast = np.ones(4 << 20, dtype=np.uint8)  # through /dev/shm, in use while it runs
        with hi.Config(job_handler=hi.ParallelJobHandler(2)):
            a = fault_sleep_with_child.run(pid_file={pid_file!r})
            b = fault_sleep.run(seconds=1000, value=ballast)
        time.sleep(1000)
    """, tmp_path)
    worker, child = (int(x) for x in wait_for_file(pid_file).split())
    mine = f"hither-{p.pid}-"
    deadline = time.monotonic() + 20
    while not any(n.startswith(mine) for n in _buffers()):
        assert time.monotonic() < deadline, "the argument buffer never appeared"
        time.sleep(0.02)
    p.send_signal(sig)
    p.communicate(timeout=20)
    _assert_gone([worker, child], 5)
    leaked = [n for n in _buffers() if n.startswith(mine)]
    assert leaked  # its owner could not remove it: the next start does
    sweeper = subprocess.run([sys.executable, "-c",
                              "import hither as hi; hi.ParallelJobHandler(1).shutdown()"],
                             capture_output=True, text=True, timeout=60)
    assert sweeper.returncode == 0, sweeper.stderr
    assert not [n for n in _buffers() if n.startswith(mine)]


@pytest.mark.timeout(60)
def test_workers_outlive_the_thread_that_started_them(make_pjh):
    """PR_SET_PDEATHSIG fires when the *thread* that started a worker ends; the worker
    must then check that its owner process is really gone, and go on."""
    import threading

    made = []
    t = threading.Thread(target=lambda: made.append(make_pjh(1)))
    t.start()
    t.join()
    with hi.Config(job_handler=made[0]):
        first = fault_pid.run().wait(timeout=20)
        time.sleep(1.0)  # the watchdog has seen the death signal by now
        assert fault_pid.run().wait(timeout=20) == first


@pytest.mark.timeout(30)
def test_sweep_removes_only_buffers_of_dead_owners(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = [f"hither-{dead.pid}-{uuid.uuid4().hex}.buf", f"hither-{os.getpid()}-{uuid.uuid4().hex}.buf",
             "hither-notapid.buf", "other.buf"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    swept = transfer.sweep_dead_buffers(str(tmp_path))
    assert swept == [str(tmp_path / names[0])]
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])


# ------------------------------------------------------------------ 7. long failing chains
@pytest.mark.timeout(120)
@pytest.mark.parametrize("where, n", [("default", 4000), ("parallel", 400)])
def test_failure_at_the_head_of_a_long_chain_keeps_messages_small(make_pjh, where, n):
    jh = make_pjh(2) if where == "parallel" else None
    with hi.Config(job_handler=jh):
        head = fault_fail.run(delay=0.5 if jh else 0.0)  # dependents wait for it, or not
        job = head
        chain = []
        for _ in range(n):
            job = fault_inc.run(x=job)
            chain.append(job)
        with pytest.raises(DependencyFailedError) as info:
            chain[-1].wait(timeout=60)
    msg = str(info.value)
    assert len(msg) < 600, msg[:2000]
    assert msg.count("boom at the head of the chain") == 1
    assert f"fault_fail ({head.id}) error: ValueError" in msg
    assert max(len(str(j.get_error())) for j in chain) < 600


# ------------------------------------------------------------------ 8, 9. bad results
@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["cycle", "deep"])
def test_cyclic_or_too_deep_result_is_a_clear_job_error(handler, kind):
    with hi.Config(job_handler=handler):
        before = fault_pid.run().wait(timeout=20)
        # the words of hither.local.execution.check_result, or of a cycle/depth guard in values.scan
        with pytest.raises(TypeError, match=r"the result.*(contains itself|cycle|deep)"):
            fault_cyclic_result.run(kind=kind).wait(timeout=20)
        assert fault_pid.run().wait(timeout=20) == before  # same process: the worker lives


@pytest.mark.timeout(60)
def test_any_failure_while_checking_a_result_is_a_job_error(handler):
    with hi.Config(job_handler=handler):
        before = fault_pid.run().wait(timeout=20)
        with pytest.raises(TypeError, match="result of fault_weird_result could not be checked: "
                                            "RuntimeError: this object's __class__ cannot be read"):
            fault_weird_result.run().wait(timeout=20)
        assert fault_pid.run().wait(timeout=20) == before


# ------------------------------------------------------------------ 10. __main__ classes
@pytest.mark.timeout(90)
def test_main_script_enum_and_int_subclass_arguments_on_both_handlers(tmp_path):
    p = _program("""
        import enum, json
        import hither as hi

        class Color(enum.IntEnum):
            RED = 1
            BLUE = 2

        class Meters(int):
            pass

        @hi.function('describe', '0.1.0')
        def describe(c, m):
            return [type(c).__name__, int(c), c.name, type(m).__name__, int(m) * 2]

        @hi.function('echo', '0.1.0')
        def echo(c):
            return c

        out = {}
        for name, jh in (("default", None), ("parallel", hi.ParallelJobHandler(1))):
            with hi.Config(job_handler=jh):
                d = describe.run(c=Color.BLUE, m=Meters(5)).wait(timeout=60)
                e = echo.run(c=Color.RED).wait(timeout=60)
            out[name] = [d, type(e).__name__, e is Color.RED]
        print(json.dumps(out))
    """, tmp_path)
    out, err = p.communicate(timeout=80)
    assert p.returncode == 0, err
    got = json.loads(out)
    expected = [["Color", 2, "BLUE", "Meters", 10], "Color", True]
    assert got == {"default": expected, "parallel": expected}


# ------------------------------------------------------------------ 13. large arrays still work
@pytest.mark.timeout(60)
def test_large_array_round_trip_leaves_no_buffer(make_pjh):
    a = np.arange(3 << 20, dtype=np.float64)
    with hi.Config(job_handler=make_pjh(1)):
        b = fault_sleep.run(seconds=0, value=a).wait(timeout=30)
    assert np.array_equal(a, b)


def test_cyclic_and_very_deep_arguments_are_clear_errors_at_run():
    import hither as hi

    @hi.function('takes_anything', '0.1.0')
    def takes_anything(x):
        return 1

    cyclic = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(TypeError, match=r"x\['a'\]\[0\] contains itself \(a cycle\)"):
        takes_anything.run(x=cyclic)
    deep = []
    cur = deep
    for _ in range(10_000):
        nxt = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(TypeError, match="nested more than 500 levels deep"):
        takes_anything.run(x=deep)
    shared = [1, 2]
    assert takes_anything.run(x=[shared, shared]).wait() == 1  # shared, not cyclic: fine

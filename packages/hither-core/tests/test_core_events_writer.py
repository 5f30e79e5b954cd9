"""The event log's writer process: it writes what its program handed it even when the
program is killed, ends with its program, is not hit by the program's Ctrl-C, takes odd
runtime info values as text, and the recorder's own thread writes when it cannot start."""
import enum
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import hither as hi
from hither import events
from hither.events import recorder

HERE = os.path.dirname(os.path.abspath(__file__))


def _env(db, **more):
    e = {**os.environ, "HITHER_MONITOR_DB": str(db), **more}
    e.pop("HITHER_MONITOR", None)
    return e


def _count(db, sql="SELECT count(*) FROM jobs WHERE status = 'finished'"):
    con = events.open_log(db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie of ours? (it is not: its parent was the killed program)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


_HEAD = textwrap.dedent("""
    import os, signal, sys, time
    import hither as hi
    from hither.events import recorder

    @hi.function("w_double", "1")
    def w_double(x):
        return 2 * x

    for i in range({n}):
        w_double.run(x=i).wait()
    rec = recorder.current()
""")


def _program(n, then):
    """A program that runs ``n`` jobs, then ``then`` (with ``rec``, its recorder)."""
    return _HEAD.format(n=n) + textwrap.dedent(then)


def _wait_gone(pid, seconds=20):
    deadline = time.monotonic() + seconds
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _gone(pid)


_KILLED = _program(300, """
    rec._wake.set()
    deadline = time.monotonic() + 10
    while rec.forwarded < 900 and time.monotonic() < deadline:  # 3 transitions a job, handed over
        time.sleep(0.01)
    print(rec._sink.proc.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_program_s_jobs_are_written_and_its_writer_ends(tmp_path):
    db = tmp_path / "killed.sqlite3"
    p = subprocess.run([sys.executable, "-c", _KILLED], env=_env(db), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert _wait_gone(int(p.stdout.strip())), "the writer process outlived its killed program"
    assert _count(db) == 300


_INTERRUPTED = _program(200, """
    while rec._sink is None:
        time.sleep(0.01)
    print(rec._sink.proc.pid, flush=True)
    time.sleep(60)
""")


def test_ctrl_c_of_the_program_leaves_its_writer_to_write_and_end(tmp_path):
    """A terminal's Ctrl-C signals the whole foreground group: the writer runs in a session
    of its own, so it is not interrupted, writes what it got and ends with the program."""
    db = tmp_path / "interrupted.sqlite3"
    p = subprocess.Popen([sys.executable, "-c", _INTERRUPTED], env=_env(db), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        writer = int(p.stdout.readline())
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert "KeyboardInterrupt" in err
    assert _wait_gone(writer)
    assert _count(db) == 200


_STOPPED = _program(100, """
    while rec._sink is None:
        time.sleep(0.01)
    os.kill(rec._sink.proc.pid, signal.SIGSTOP)
    print(rec._sink.proc.pid, flush=True)
    t = time.monotonic()
    for i in range(20000):
        w_double.run(x=i).wait()
    print(time.monotonic() - t, flush=True)
""")


def test_a_stopped_writer_neither_slows_nor_holds_the_program_and_the_loss_is_told(tmp_path):
    db = tmp_path / "stopped.sqlite3"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", _STOPPED], env=_env(db), capture_output=True, text=True,
                       timeout=120)
    elapsed = time.monotonic() - t0
    writer, loop = p.stdout.split()
    try:
        os.kill(int(writer), signal.SIGCONT)
        assert _wait_gone(int(writer)), "the writer outlived its program once resumed"
    finally:
        try:
            os.kill(int(writer), signal.SIGKILL)
        except OSError:
            pass
    assert p.returncode == 0, p.stderr
    assert elapsed < float(loop) + 15  # start-up and imports; the exit waits about 1 s
    [line] = [x for x in p.stderr.splitlines() if "hither" in x]
    assert "could not hand the last jobs" in line and "not recorded" in line
    assert "Traceback" not in p.stderr


class Colour(enum.Enum):
    RED = 1


class _Odd:
    def __repr__(self):
        return "<odd>"


class _OddInfoHandler(hi.JobHandler):
    """Reports a run with runtime info values the log's writer cannot take as they are."""

    name = "oddinfo"

    def submit(self, job, inline):
        job.report_running({"host": "node3", "pid": 77, "colour": Colour.RED, "odd": _Odd(),
                            "scalar": np.float32(1.5), "nested": {"t": (1, Colour.RED), 2: "two"}})
        job.report_result(2 * job.resolved_kwargs["x"])

    def cancel(self, job):
        return False


@hi.function("w_twice", "1")
def w_twice(x):
    return 2 * x


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_odd_runtime_info_is_written_as_text_by_either_writer(writer, tmp_path, monkeypatch):
    db = tmp_path / "odd.sqlite3"
    monkeypatch.setenv("HITHER_MONITOR_DB", str(db))
    monkeypatch.delenv("HITHER_MONITOR", raising=False)
    monkeypatch.setenv(recorder.WRITER_ENV, writer)
    recorder.reset()
    try:
        with hi.Config(job_handler=_OddInfoHandler()):
            job = w_twice.run(x=4)
        plain = w_twice.run(x=5)
        assert job.wait() == 8 and plain.wait() == 10
        rec = recorder.current()
        deadline = time.monotonic() + 10
        while rec._sink is None and time.monotonic() < deadline:  # noqa: SLF001 - which writer ran
            time.sleep(0.01)
        sink = rec._sink  # noqa: SLF001
        assert (writer == "process") == hasattr(sink, "proc")
    finally:
        recorder.reset()
    con = events.open_log(db)
    try:
        rows = {r["job_id"]: dict(r) for r in con.execute("SELECT * FROM jobs")}
    finally:
        con.close()
    assert {rows[job.id]["status"], rows[plain.id]["status"]} == {"finished"}
    info = json.loads(rows[job.id]["runtime_info"])
    assert (rows[job.id]["host"], rows[job.id]["pid"]) == ("node3", 77)
    assert info["colour"] == "Colour.RED" and info["odd"] == "<odd>" and info["scalar"] == "1.5"
    assert info["nested"] == {"t": [1, "Colour.RED"], "2": "two"}


def test_the_writer_process_sees_none_of_the_program_s_python_settings(tmp_path):
    """It runs isolated (``-I -S``): a sitecustomize on the program's PYTHONPATH, which
    here breaks any child Python of the program, does not reach it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\nparent = os.environ.get('W_PARENT')\n"
        "if parent and parent != str(os.getpid()):\n    raise SystemExit(3)\n")
    db = tmp_path / "isolated.sqlite3"
    prog = ("import os; os.environ['W_PARENT'] = str(os.getpid())\n"
            "import hither as hi\n@hi.function('w_one', '1')\ndef w_one():\n    return 1\n"
            "print(w_one.run().wait())\n")
    env = _env(db, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "1", p.stderr
    assert "recording" not in p.stderr, p.stderr
    assert _count(db) == 1


def test_the_writer_process_gets_none_of_the_program_s_environment(tmp_path, monkeypatch):
    """A program's secrets (a compute resource's HITHER_REMOTE_SECRET, a token) never reach
    the writer: it gets the few variables SQLite and text need, nothing else."""
    db = tmp_path / "env.sqlite3"
    monkeypatch.setenv("HITHER_MONITOR_DB", str(db))
    monkeypatch.delenv("HITHER_MONITOR", raising=False)
    monkeypatch.delenv(recorder.WRITER_ENV, raising=False)
    monkeypatch.setenv("HITHER_REMOTE_SECRET", "s3cret-for-the-test")
    recorder.reset()
    try:
        assert w_twice.run(x=1).wait() == 2
        rec = recorder.current()
        deadline = time.monotonic() + 10
        while rec._sink is None and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        with open(f"/proc/{rec._sink.proc.pid}/environ", "rb") as f:  # noqa: SLF001
            names = {kv.split(b"=", 1)[0].decode() for kv in f.read().split(b"\0") if kv}
    finally:
        recorder.reset()
    assert "HITHER_REMOTE_SECRET" not in names and "HITHER_MONITOR_DB" not in names
    assert names <= {"TMPDIR", "SQLITE_TMPDIR", "LANG", "LC_ALL", "LC_CTYPE"}


def test_the_recorder_thread_leaves_the_program_s_signals_to_its_main_thread(tmp_path, monkeypatch):
    """A signal the kernel gives a thread that does not block it is only noted there: the
    main thread's blocking call goes on. The recorder's thread blocks the program's signals."""
    monkeypatch.setenv("HITHER_MONITOR_DB", str(tmp_path / "sig.sqlite3"))
    monkeypatch.delenv("HITHER_MONITOR", raising=False)
    recorder.reset()
    try:
        assert w_twice.run(x=1).wait() == 2
        rec = recorder.current()
        deadline = time.monotonic() + 10
        while rec._sink is None and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        time.sleep(0.05)  # the mask is set just after the writer's start
        tid = rec._thread.native_id  # noqa: SLF001
        with open(f"/proc/self/task/{tid}/status") as f:
            blocked = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
    finally:
        recorder.reset()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        assert blocked & (1 << (sig - 1)), f"{sig!r} not blocked in the recorder's thread"
    with open("/proc/self/status") as f:  # and not in the main thread (pytest's)
        main = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
    assert not main & (1 << (signal.SIGINT - 1))


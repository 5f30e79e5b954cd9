"""The progress line of ``hi.wait()`` (``hither.jobs.progress``), issue 22: redrawn on a timer
(so jobs that each finish in under 0.5 s still show it), with done/total, rate and ETA; only
at a terminal (tested through a pseudo-terminal) or under ``HITHER_PROGRESS=1``; always ended
with a newline, also on Ctrl-C; nothing at all in a pipe."""
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

import hither as hi

pytestmark = pytest.mark.timeout(120)

PROGRAM = '''
import sys, time
import hither as hi

@hi.function('nap', '0.1.0')
def nap(t, i):
    time.sleep(t)
    return i

n, t = int(sys.argv[1]), float(sys.argv[2])
with hi.Config(job_handler=hi.ParallelJobHandler(num_workers=2)):
    jobs = [nap.run(t=t, i=i) for i in range(n)]
print("SUBMITTED", flush=True)
hi.wait()
print("RESULTS", sum(j.get_result() for j in jobs))
'''


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITHER_PROGRESS")}
    env.update(extra)
    return env


def run_on_pty(tmp_path, args, env, interrupt_after=None):
    """The program's whole terminal output (stdout and stderr on one pseudo-terminal);
    with ``interrupt_after``, SIGINT that many seconds after the first progress line."""
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(script), *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 90
    interrupt_at = None
    try:
        while time.monotonic() < deadline:
            if interrupt_after is not None and interrupt_at is None and b"hither: " in out:
                interrupt_at = time.monotonic() + interrupt_after
            if interrupt_at is not None and time.monotonic() >= interrupt_at:
                proc.send_signal(signal.SIGINT)
                interrupt_at = float("inf")
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        os.close(master)
    return out.decode(errors="replace")


def draws(output):
    """The progress texts drawn, in order."""
    return [m.group(1).rstrip() for m in re.finditer(r"\r(hither: [^\r\n]*)", output)]


def test_the_line_appears_when_every_job_is_quick(tmp_path):
    """20 jobs of 0.5 s on 2 workers (each wait for one job is shorter than a redraw
    period): the line appears after the default 2 s, is redrawn on the timer with done/total,
    rate and ETA, and ends with its final state and a newline."""
    out = run_on_pty(tmp_path, ["20", "0.5"], _env())
    assert "RESULTS 190" in out, out
    texts = draws(out)
    assert len(texts) >= 3, out  # ~5 s of jobs, drawn every 0.5 s after 2 s
    assert re.search(r"hither: \d+/20 done \(\d+ running, \d+ queued\) \| \d+\.\d jobs/s \| ETA \d+s",
                     out), texts
    assert texts[-1].startswith("hither: 20/20 done (0 running, 0 queued) | "), texts
    last = out.rindex("\rhither: ")
    assert out.index("\n", last) < out.index("RESULTS"), "the line was not ended before the next output"


def test_nothing_when_not_a_terminal_and_forced_on_or_off(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    env = _env(HITHER_PROGRESS_AFTER="0.2")
    piped = subprocess.run([sys.executable, str(script), "6", "0.3"], capture_output=True,
                           text=True, timeout=90, env=env)
    assert "RESULTS 15" in piped.stdout and "hither:" not in piped.stdout + piped.stderr
    forced = subprocess.run([sys.executable, str(script), "6", "0.3"], capture_output=True,
                            timeout=90, env={**env, "HITHER_PROGRESS": "1"})
    err = forced.stderr.decode()
    assert "\rhither: 6/6 done (0 running, 0 queued)" in err, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    off = run_on_pty(tmp_path, ["6", "0.3"], {**env, "HITHER_PROGRESS": "0"})
    assert "RESULTS 15" in off and "hither:" not in off, off


def test_ctrl_c_ends_the_line_before_the_traceback(tmp_path):
    out = run_on_pty(tmp_path, ["40", "0.5"], _env(HITHER_PROGRESS_AFTER="0.2"),
                     interrupt_after=0.7)
    assert "KeyboardInterrupt" in out, out
    assert "RESULTS" not in out
    tb = out.index("Traceback (most recent call last)")
    assert out[:tb].rstrip(" ").endswith("\n"), out  # no half-drawn line before it
    assert out.rindex("\rhither: ") < tb


class _Job:
    def __init__(self, status):
        self.status = status

    def get_status(self):
        return self.status

    def is_done(self):
        return self.status in (hi.JobStatus.FINISHED, hi.JobStatus.ERROR, hi.JobStatus.CANCELLED)


def test_the_text_counts_rate_and_eta():
    from hither.jobs.progress import ProgressLine

    S = hi.JobStatus
    jobs = [_Job(s) for s in [S.FINISHED, S.RUNNING, S.RUNNING, S.QUEUED, S.PENDING]]
    line = ProgressLine(None)
    line.add(jobs)
    assert line.text().startswith("hither: 1/5 done (2 running, 2 queued) | - jobs/s | ETA ?")
    line.start -= 10  # ten seconds later, 2 more ended: 0.2 jobs/s, 2 left: ETA 10 s
    jobs[1].status = S.FINISHED
    jobs[2].status = S.ERROR
    text = line.text()
    assert "3/5 done (0 running, 2 queued) | 1 failed, 0 cancelled | 0.2 jobs/s | ETA 10s | elapsed 10s" in text
    for j in jobs:
        j.status = S.CANCELLED
    assert line.text() == "hither: 5/5 done (0 running, 0 queued) | 0 failed, 5 cancelled | elapsed 10s"


NOTEBOOK_CELL = r'''
import os, sys
sys.path.insert(0, {folder!r})
os.environ["HITHER_PROGRESS_AFTER"] = "0.2"
import hither as hi
import nb_funcs
with hi.Config(job_handler=hi.ParallelJobHandler(num_workers=2)):
    jobs = [nb_funcs.nap.run(t=0.3, i=i) for i in range(6)]
hi.wait()
print("RESULTS", sum(j.get_result() for j in jobs))
'''


@pytest.mark.slow
def test_in_a_jupyter_kernel(tmp_path):
    """In a notebook (a real IPython kernel, driven as Jupyter does): the line goes to the
    cell's stderr stream, redrawn with \\r (which the notebook shows as one line), and ends
    with a newline."""
    pytest.importorskip("ipykernel")
    manager = pytest.importorskip("jupyter_client.manager")
    (tmp_path / "nb_funcs.py").write_text(
        "import time\nimport hither as hi\n\n@hi.function('nap', '0.1')\n"
        "def nap(t, i):\n    time.sleep(t)\n    return i\n")
    km, kc = manager.start_new_kernel(kernel_name="python3", env=_env(), cwd=str(tmp_path))
    streams = []
    try:
        msg_id = kc.execute(NOTEBOOK_CELL.format(folder=str(tmp_path)))
        while True:
            m = kc.get_iopub_msg(timeout=90)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                streams.append((m["content"]["name"], m["content"]["text"]))
            assert m["msg_type"] != "error", m["content"]
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    err = "".join(text for name, text in streams if name == "stderr")
    assert "RESULTS 15\n" in "".join(text for name, text in streams if name == "stdout")
    assert "\rhither: 6/6 done (0 running, 0 queued)" in err and err.endswith("\n"), streams
    assert err.count("\n") == 1 and "\033" not in err, streams


def test_a_bad_delay_is_named_and_the_default_used(monkeypatch, caplog):
    from hither.jobs.progress import ProgressLine

    monkeypatch.setenv("HITHER_PROGRESS_AFTER", "soon")
    with caplog.at_level("WARNING", logger="hither.jobs.progress"):
        line = ProgressLine(sys.stderr)
    assert "HITHER_PROGRESS_AFTER='soon' is not a number of seconds" in caplog.text
    assert 1.9 < line.next_draw - line.start < 2.1
    monkeypatch.setenv("HITHER_PROGRESS_AFTER", "0.25")
    line = ProgressLine(sys.stderr)
    assert abs(line.next_draw - line.start - 0.25) < 0.01

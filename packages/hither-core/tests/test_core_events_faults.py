"""The job event log when things go wrong: a log that cannot be written never fails nor
slows a job (one warning), several programs write at once, the exit flush is bounded, and
results are the same with the monitor on, off or broken."""
import json
import logging
import os
import sqlite3
import shutil
import subprocess
import sys
import time

import pytest

import hither as hi
from hither import events
from hither.events import recorder

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = os.path.join(HERE, "events_prog.py")


@hi.function("ev_twice", "1")
def ev_twice(x):
    return 2 * x


@pytest.fixture
def use_log(monkeypatch):
    def use(path):
        monkeypatch.setenv("HITHER_MONITOR_DB", str(path))
        monkeypatch.delenv("HITHER_MONITOR", raising=False)
        recorder.reset()
    yield use
    recorder.reset()


def _run_jobs(n=200):
    t0 = time.perf_counter()
    out = [ev_twice.run(x=i).wait() for i in range(n)]
    assert out == [2 * i for i in range(n)]
    return time.perf_counter() - t0


def _wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _warnings(caplog):
    return [r for r in caplog.records if r.name == "hither.events" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("kind", ["directory", "corrupt", "unwritable folder"])
def test_a_broken_log_stops_recording_with_one_warning(kind, tmp_path, use_log, caplog):
    path = tmp_path / "monitor.sqlite3"
    if kind == "directory":
        path.mkdir()
    elif kind == "corrupt":
        path.write_bytes(os.urandom(8192))
    else:
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "sub" / "monitor.sqlite3"  # its folder cannot be made
    use_log(path)
    _run_jobs()
    _wait_for(lambda: recorder.put is None)  # recording stopped: nothing more per job
    _run_jobs()
    [warning] = _warnings(caplog)
    assert "stops recording jobs" in warning.getMessage() and str(path) in warning.getMessage()
    if kind == "corrupt":
        assert "not a database" in warning.getMessage()


def test_a_locked_log_is_written_once_free(tmp_path, use_log, caplog):
    path = tmp_path / "monitor.sqlite3"
    events.open_log(path, readonly=False).close()
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        use_log(path)
        free = _run_jobs(50)
        _wait_for(lambda: _warnings(caplog))
        locked = _run_jobs(200)
        assert locked < max(1.0, 20 * free), "a locked log slowed jobs down"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [warning] = _warnings(caplog)
    assert "tries again later" in warning.getMessage()

    def written():
        con = events.open_log(path)
        try:
            return con.execute("SELECT count(*) FROM jobs WHERE status = 'finished'").fetchone()[0]
        finally:
            con.close()
    _wait_for(lambda: written() == 250)
    assert recorder.put is not None


def _prog(args, db, *, env=None, prefix=(), timeout=120):
    e = {**os.environ, "HITHER_MONITOR_DB": str(db), **(env or {})}
    if "HITHER_MONITOR" not in (env or {}):
        e.pop("HITHER_MONITOR", None)
    p = subprocess.run([*prefix, sys.executable, PROG, *map(str, args)], env=e, capture_output=True,
                       text=True, timeout=timeout, cwd=HERE)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_read_only_log(tmp_path):
    path = tmp_path / "monitor.sqlite3"
    events.open_log(path, readonly=False).close()
    os.chmod(path, 0o444)
    prefix = ()
    if os.geteuid() == 0:  # root writes a 0444 file: run without the capability that allows it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: no way to make a file read-only")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")
    out = _prog([20], path, prefix=prefix)
    assert out["results"][:20] == [2 * i for i in range(20)]
    assert len(out["warnings"]) == 1 and "readonly" in out["warnings"][0]


@pytest.mark.slow
def test_three_programs_write_at_once(tmp_path):
    db = tmp_path / "shared.sqlite3"
    e = {**os.environ, "HITHER_MONITOR_DB": str(db)}
    e.pop("HITHER_MONITOR", None)
    procs = [subprocess.Popen([sys.executable, PROG, "400"], env=e, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=HERE) for _ in range(3)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert all(o["warnings"] == [] for o in outs)
    con = events.open_log(db)
    ids = {r[0]: r[1] for r in con.execute("SELECT job_id, status FROM jobs")}
    runs = {r[0] for r in con.execute("SELECT run_id FROM runs")}
    firsts = dict(con.execute("SELECT job_id, status FROM events WHERE seq IN "
                              "(SELECT MIN(seq) FROM events GROUP BY job_id)").fetchall())
    lasts = dict(con.execute("SELECT job_id, status FROM events WHERE seq IN "
                             "(SELECT MAX(seq) FROM events WHERE status NOT IN ('queued', 'running') "
                             "GROUP BY job_id)").fetchall())
    con.close()
    assert runs == {o["run_id"] for o in outs} and len(runs) == 3
    for o in outs:
        assert [ids[j] for j in o["ids"]] == o["statuses"]
    assert len(ids) == 3 * 404
    # every job: "created" first, its end among its events (passing statuses replaced within
    # one batch are not written: between 2 and 4 events a job)
    assert set(firsts) == set(ids) and set(firsts.values()) == {"created"}
    assert lasts == ids


def test_exit_writes_what_is_queued_and_never_hangs(tmp_path):
    db = tmp_path / "exit.sqlite3"
    out = _prog([300, "exit"], db)
    con = events.open_log(db)
    assert con.execute("SELECT count(*) FROM jobs").fetchone()[0] == len(out["ids"]) + 2  # + the warm-up
    con.close()
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        _prog([300, "exit"], db)
        slow_exit = time.monotonic() - t0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert slow_exit < 30  # the program's own start (imports) dominates; the flush waits <= 1 s


def test_results_status_and_info_same_with_monitor_on_off_or_broken(tmp_path):
    broken = tmp_path / "dir"
    broken.mkdir()
    on = _prog([100], tmp_path / "on.sqlite3")
    off = _prog([100], tmp_path / "off.sqlite3", env={"HITHER_MONITOR": "0"})
    bad = _prog([100], broken)
    assert not (tmp_path / "off.sqlite3").exists()
    for key in ("results", "statuses", "error", "info_keys"):
        assert on[key] == off[key] == bad[key], key
    assert on["warnings"] == off["warnings"] == [] and len(bad["warnings"]) == 1
    # a loose bound: the machine is shared; the benchmark measures the cost (bench_events.py)
    assert max(on["elapsed"], bad["elapsed"]) < 3 * off["elapsed"] + 0.5


def test_a_full_disk_never_fails_a_job(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    db = small / "monitor.sqlite3"
    script = (f"mount -t tmpfs -o size=256k tmpfs {small} || exit 77; "
              f"head -c 180k /dev/zero > {small}/filler; exec {sys.executable} {PROG} 3000")
    e = {**os.environ, "HITHER_MONITOR_DB": str(db)}
    e.pop("HITHER_MONITOR", None)
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], env=e, capture_output=True, text=True,
                       timeout=180, cwd=HERE)
    if p.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["results"][:3000] == [2 * i for i in range(3000)]
    assert out["statuses"][-2:] == ["error", "finished"]
    [warning] = out["warnings"]  # full: retried quietly, then one warning for what was left
    assert "could not record" in warning or "stops recording" in warning

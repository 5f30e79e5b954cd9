"""The job event log (hither.events): what a job's life leaves in it, the read API, the
switch, retention."""
import json
import os
import sqlite3
import threading
import time

import numpy as np
import pytest

import hither as hi
from hither import events
from hither.events import recorder
from hither.events import rows
from hither.events.store import LogWriter

from events_prog import boom, sleepy


@hi.function("ev_add", "0.3")
def ev_add(a, b):
    return a + b


@hi.function("ev_ignore", "1")
def ev_ignore(a, b):
    return None


add = ev_add


@hi.function("loud", "1")
def loud(n):
    print("x" * n)
    return n


@pytest.fixture
def log_path(tmp_path, monkeypatch):
    """A fresh log for this test; ``read()`` flushes the recorder and returns the rows."""
    path = tmp_path / "logs" / "monitor.sqlite3"
    monkeypatch.setenv("HITHER_MONITOR_DB", str(path))
    monkeypatch.delenv("HITHER_MONITOR", raising=False)
    recorder.reset()
    yield path
    recorder.reset()


def read(path, sql, *args):
    recorder.reset()  # writes what is queued
    con = events.open_log(path)
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def test_a_finished_job_its_life_and_its_run(log_path):
    job = add.run(a=1, b=2)
    assert job.wait() == 3
    [row] = read(log_path, "SELECT * FROM jobs")
    assert row["job_id"] == job.id and job.id.startswith(recorder.RUN_ID + "-")
    assert (row["function_name"], row["function_version"], row["handler"]) == ("ev_add", "0.3", "DefaultJobHandler")
    assert row["status"] == "finished" and row["cached"] == 0
    assert row["created_at"] <= row["started_at"] <= row["ended_at"] == row["updated_at"]
    assert row["args_summary"] == "a=1, b=2"
    assert row["pid"] == os.getpid() and row["host"]
    assert json.loads(row["runtime_info"])["status"] == "finished"
    evs = read(log_path, "SELECT status FROM events WHERE job_id = ? ORDER BY seq", job.id)
    seen = [e["status"] for e in evs]  # passing statuses replaced within one batch are not kept
    assert seen[0] == "created" and seen[-1] == "finished", seen
    assert all(s in ("queued", "running") for s in seen[1:-1]) and len(seen) == len(set(seen)), seen
    [run] = read(log_path, "SELECT * FROM runs")
    assert run["run_id"] == recorder.RUN_ID and run["pid"] == os.getpid()
    assert run["started_at"] <= run["last_seen"]


def test_a_status_seen_at_a_batch_boundary_is_kept(log_path):
    """A job still running when a batch is written keeps its "running" event; passing
    statuses replaced within one batch are not written (Recorder._event)."""
    with hi.Config(job_handler=hi.ParallelJobHandler(num_workers=1)):
        job = sleepy.run(s=1.5)
        assert job.wait(60) == 1.5
    evs = read(log_path, "SELECT status FROM events WHERE job_id = ? ORDER BY seq", job.id)
    assert [e["status"] for e in evs][-2:] == ["running", "finished"], evs


def test_failed_job_error_traceback_and_console(log_path, handler):
    with hi.Config(job_handler=handler):
        job = boom.run(x="k")
        job.wait_done(60)
    [row] = read(log_path, "SELECT * FROM jobs")
    assert row["status"] == "error"
    assert row["error_type"] == "KeyError" and "missing k" in row["error_message"]
    assert "raise KeyError" in row["traceback"]
    assert "about to fail" in json.loads(row["runtime_info"])["stdout"]
    if handler is not None:  # ran in a worker: its pid, not ours
        assert row["pid"] != os.getpid() and row["handler"] == "ParallelJobHandler"


def test_pipeline_edges_and_a_failed_input(log_path):
    a = add.run(a=1, b=1)
    b = add.run(a=a, b=10)
    c = add.run(a=a, b=b)
    bad = boom.run(x=1)
    d = add.run(a=bad, b=1)
    assert c.wait() == 14
    d.wait_done(10)
    edges = {(e["job_id"], e["input_job_id"]) for e in read(log_path, "SELECT * FROM edges")}
    assert edges == {(b.id, a.id), (c.id, a.id), (c.id, b.id), (d.id, bad.id)}
    [row] = read(log_path, "SELECT * FROM jobs WHERE job_id = ?", d.id)
    assert row["status"] == "error" and row["error_type"] == "hither.errors.DependencyFailedError"
    assert f"<job {bad.id}>" in row["args_summary"] or "b=1" in row["args_summary"]
    evs = read(log_path, "SELECT status FROM events WHERE job_id = ? ORDER BY seq", d.id)
    assert [e["status"] for e in evs] == ["created", "error"]  # never queued


def test_cached_hit_and_cancel(log_path, make_pjh):
    from test_core_jobs import _MemBackend

    with hi.Config(job_cache=hi.JobCache(backend=_MemBackend())):
        first = add.run(a=5, b=5)
        first.wait()
        second = add.run(a=5, b=5)
        assert second.wait() == 10
    with hi.Config(job_handler=make_pjh(1)):
        blocker = sleepy.run(s=30)
        queued = sleepy.run(s=0)
        time.sleep(0.2)
        assert queued.cancel()
        blocker.cancel()
    rows = {r["job_id"]: r for r in read(log_path, "SELECT * FROM jobs")}
    assert rows[second.id]["cached"] == 1 and rows[second.id]["status"] == "finished"
    assert rows[first.id]["cached"] == 0 and rows[first.id]["job_hash"] == first.job_hash
    assert rows[queued.id]["status"] == "cancelled"


def test_args_summary_is_short_and_never_walks_values(log_path):
    big = np.zeros((1000, 1000))
    job = ev_ignore.run(a=big, b=np.ones(3, dtype=np.int32))
    job.wait()
    long = ev_ignore.run(a="y" * 10_000, b="z")
    long.wait()
    lists = ev_ignore.run(a=list(range(100_000)), b=[1])
    lists.wait()
    rows = {r["job_id"]: r["args_summary"] for r in read(log_path, "SELECT * FROM jobs")}
    assert rows[job.id] == "a=ndarray[float64[1000, 1000]], b=ndarray[int32[3]]"
    assert rows[long.id].startswith("a='" + "y" * 60) and len(rows[long.id]) < 100
    assert rows[lists.id] == "a=list[100000], b=list[1]"


def test_console_output_is_cut_to_64_kib(log_path):
    job = loud.run(n=200_000)
    job.wait()
    [row] = read(log_path, "SELECT runtime_info FROM jobs")
    out = json.loads(row["runtime_info"])["stdout"]
    assert 64 * 1024 <= len(out) < 64 * 1024 + 100 and "more characters not kept" in out


def test_off_means_no_thread_no_file(tmp_path, monkeypatch):
    path = tmp_path / "off.sqlite3"
    monkeypatch.setenv("HITHER_MONITOR_DB", str(path))
    monkeypatch.setenv("HITHER_MONITOR", "0")
    recorder.reset()
    try:
        assert add.run(a=1, b=1).wait() == 2
        assert recorder.put is None and recorder.current() is None
        assert not any(t.name == "hither-events" for t in threading.enumerate())
        assert not path.exists()
    finally:
        monkeypatch.delenv("HITHER_MONITOR")
        recorder.reset()


def test_read_api(tmp_path, monkeypatch):
    monkeypatch.delenv("HITHER_MONITOR_DB", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert events.default_log_path() == tmp_path / "xdg" / "hither" / "monitor.sqlite3"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert events.default_log_path() == events.default_log_path({"HOME": "x"}).__class__(
        os.path.expanduser("~/.cache/hither/monitor.sqlite3"))
    assert events.default_log_path({"HITHER_MONITOR_DB": "/a/b.db"}).as_posix() == "/a/b.db"
    assert not events.recording_enabled({"HITHER_MONITOR": "off"})
    assert events.recording_enabled({})
    assert events.keep_days({"HITHER_MONITOR_KEEP_DAYS": "junk"}) == 30
    with pytest.raises(FileNotFoundError, match="no hither job event log"):
        events.open_log(tmp_path / "none.sqlite3")
    assert not (tmp_path / "none.sqlite3").exists()
    events.open_log(tmp_path / "log.sqlite3", readonly=False).close()
    con = events.open_log(tmp_path / "log.sqlite3")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM jobs")
    con.close()


def test_prune_keeps_recent_jobs_once_a_day(tmp_path):
    path = tmp_path / "log.sqlite3"
    con = events.open_log(path, readonly=False)
    now = time.time()
    old, new = now - 40 * 86400, now - 86400
    for jid, t in (("r-1", old), ("r-2", new)):
        con.execute("INSERT INTO jobs (job_id, run_id, status, updated_at) VALUES (?, 'r', 'finished', ?)", (jid, t))
        con.execute("INSERT INTO events (job_id, status, t) VALUES (?, 'finished', ?)", (jid, t))
        con.execute("INSERT INTO edges VALUES (?, 'x')", (jid,))
    con.close()
    writer = LogWriter(path, keep_days=30)
    assert writer.maybe_prune(now) == 1
    con = events.open_log(path)
    assert [r[0] for r in con.execute("SELECT job_id FROM jobs")] == ["r-2"]
    assert [r[0] for r in con.execute("SELECT job_id FROM edges")] == ["r-2"]
    assert [r[0] for r in con.execute("SELECT job_id FROM events")] == ["r-2"]
    con.close()
    assert LogWriter(path, keep_days=0.5).maybe_prune(now) == 0  # pruned less than a day ago
    writer.close()


def test_odd_arguments_are_summarised_without_failing(log_path):
    class Weird:
        def __len__(self):
            raise RuntimeError("no len")

        def __repr__(self):
            raise RuntimeError("no repr")

    huge = 10 ** 5000
    a = ev_ignore.run(a=huge, b=None)
    b = ev_ignore.run(a=huge, b=float("nan"))
    a.wait()
    b.wait()
    rows = {r["job_id"]: r["args_summary"] for r in read(log_path, "SELECT * FROM jobs")}
    assert rows[a.id].startswith("a=") and rows[a.id].endswith("b=None") and len(rows[a.id]) < 100
    assert rows[b.id].endswith("b=nan")
    assert events.rows.describe(Weird()) == "Weird"


class _HoldingHandler(hi.JobHandler):
    """Keeps each job queued with a pending reason until ``release()``."""

    name = "holding"

    def __init__(self):
        self.jobs = []

    def submit(self, job, inline):
        job.merge_runtime_info({"pending_reason": "Resources"})
        self.jobs.append(job)

    def release(self):
        for job in self.jobs:
            job.merge_runtime_info({"pending_reason": "Priority"})
        time.sleep(2.5)  # the recorder looks at waiting jobs once a second
        for job in self.jobs:
            job.report_running({"host": "node7", "pid": 4242, "slurm_job_id": "991"})
            job.report_result(job.resolved_kwargs["a"] + job.resolved_kwargs["b"])

    def cancel(self, job):
        return False


def _one(path, job_id):
    recorder.current()._wake.set()  # noqa: SLF001 - a tick now rather than in 0.2 s
    time.sleep(0.5)
    con = events.open_log(path)
    try:
        return dict(con.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone())
    finally:
        con.close()


def test_pending_reason_and_where_a_job_ran(log_path):
    h = _HoldingHandler()
    with hi.Config(job_handler=h):
        job = add.run(a=1, b=2)
    time.sleep(1.5)
    row = _one(log_path, job.id)
    assert (row["status"], row["pending_reason"]) == ("queued", "Resources")
    h.release()
    assert job.wait(10) == 3
    [row] = read(log_path, "SELECT * FROM jobs")
    assert row["status"] == "finished" and row["pending_reason"] == "Priority"
    assert (row["host"], row["pid"], row["batch"], row["handler"]) == ("node7", 4242, "991", "_HoldingHandler")


def test_a_forked_child_of_a_recording_program_does_not_record(log_path):
    """SQLite's per-process lock state is copied by a fork, so the child of a program that
    has the log open must not open it too (wrong locks, a corrupt log): its jobs run as
    always and are not recorded; the parent's log stays whole."""
    add.run(a=1, b=1).wait()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            code = 0 if add.run(a=2, b=2).wait() == 4 and recorder.put is None else 2
            recorder.reset()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    add.run(a=3, b=3).wait()
    runs = read(log_path, "SELECT run_id, pid FROM runs")
    assert [r["pid"] for r in runs] == [os.getpid()]
    jobs = read(log_path, "SELECT job_id, run_id FROM jobs")
    assert len(jobs) == 2 and all(j["job_id"].startswith(j["run_id"] + "-") for j in jobs)
    assert read(log_path, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]


def test_prune_of_an_idle_log_keeps_the_newest_event_so_seq_only_grows(tmp_path):
    """A reader follows the events by seq: a prune that removed every event would let the
    next one reuse a seq the reader has seen (the table has no AUTOINCREMENT)."""
    path = tmp_path / "log.sqlite3"
    con = events.open_log(path, readonly=False)
    old = time.time() - 40 * 86400
    for n in range(3):
        con.execute("INSERT INTO events (job_id, status, t) VALUES (?, 'finished', ?)", (f"r-{n}", old))
    con.close()
    writer = LogWriter(path, keep_days=30)
    writer.maybe_prune(time.time())
    writer.write(rows.run_row("r"), [], [("r-9", "created", time.time())], [])
    writer.close()
    con = events.open_log(path)
    assert [tuple(r) for r in con.execute("SELECT seq, job_id FROM events ORDER BY seq")] == [(3, "r-2"), (4, "r-9")]
    con.close()


def test_a_batch_of_many_jobs_is_written_whole_and_merged_into_what_the_log_knew(tmp_path):
    """Rows go in ROWS_PER_STATEMENT at a time, the rest one by one: every row arrives, in
    order, and a later row of a job keeps the columns it does not set."""
    from hither.events.store import ROWS_PER_STATEMENT

    path = tmp_path / "log.sqlite3"
    n = 2 * ROWS_PER_STATEMENT + 7
    writer = LogWriter(path, keep_days=0)
    first = []
    for i in range(n):
        row = rows.new_row(f"r-{i}", "r")
        rows.set_cols(row, status="running", updated_at=1.0, function_name="f", args_summary=f"x={i}")
        first.append(row)
    evs = [(f"r-{i}", "running", 1.0 + i) for i in range(n)]
    writer.write(rows.run_row("r"), first, evs, [(f"r-{i}", f"r-{i - 1}") for i in range(1, n)])
    later = []
    for i in range(n):
        row = rows.new_row(f"r-{i}", "r")
        rows.set_cols(row, status="finished", updated_at=2.0, cached=i % 2, pid=i)
        later.append(row)
    writer.write(rows.run_row("r"), later, [(f"r-{i}", "finished", 100.0 + i) for i in range(n)], [])
    writer.close()
    con = events.open_log(path)
    got = [tuple(r) for r in con.execute(
        "SELECT job_id, status, updated_at, function_name, args_summary, cached, pid FROM jobs ORDER BY pid")]
    assert got == [(f"r-{i}", "finished", 2.0, "f", f"x={i}", i % 2, i) for i in range(n)]
    seqs = [tuple(r) for r in con.execute("SELECT seq, job_id, status FROM events ORDER BY seq")]
    assert [s[0] for s in seqs] == list(range(1, 2 * n + 1))
    assert [s[1:] for s in seqs] == [(f"r-{i}", "running") for i in range(n)] + [(f"r-{i}", "finished") for i in range(n)]
    assert con.execute("SELECT COUNT(*) FROM edges").fetchone()[0] == n - 1
    con.close()

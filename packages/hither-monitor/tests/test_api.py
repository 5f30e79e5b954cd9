"""The JSON API over a real event log (SQLite file): filters, paging, a job's page, live changes, safety."""
import time

import logfill
import pytest
from starlette.testclient import TestClient

from hither_monitor.app import create_app
from hither_monitor.eventlog import EventLog, LogError
from hither_monitor.timecounts import TimeCounts


def client(path, token=None, base="http://127.0.0.1:8765"):
    return TestClient(create_app(EventLog(path), token=token), base_url=base, follow_redirects=False)


def all_pages(c, **params):
    seen, before = [], None
    while True:
        q = dict(params, limit=37)
        if before:
            q.update(before_t=before[0], before_id=before[1])
        r = c.get("/api/jobs", params=q)
        assert r.status_code == 200, r.text
        data = r.json()
        seen += data["jobs"]
        before = data["next"]
        if before is None:
            return seen


def test_keyset_paging_visits_every_job_once_newest_first(small_log):
    c = client(small_log)
    rows = all_pages(c)
    assert len(rows) == 300 and len({r["job_id"] for r in rows}) == 300
    keys = [(r["updated_at"], r["job_id"]) for r in rows]
    assert keys == sorted(keys, reverse=True)
    assert c.get("/api/jobs", params={"count": 1, "limit": 5}).json()["total"] == 300


@pytest.mark.parametrize("field,param,value", [("status", "status", "error"), ("function_name", "function", "segment_cells"),
                                               ("handler", "handler", "SlurmJobHandler")])
def test_filters_select_exactly_the_matching_jobs(small_log, field, param, value):
    c = client(small_log)
    everything = all_pages(c)
    chosen = all_pages(c, **{param: value})
    assert chosen and all(r[field] == value for r in chosen)
    assert len(chosen) == sum(r[field] == value for r in everything)
    assert c.get("/api/jobs", params={param: value, "count": 1}).json()["total"] == len(chosen)


def test_time_range_filter(small_log):
    c = client(small_log)
    everything = all_pages(c)
    times = sorted(r["updated_at"] for r in everything)
    lo, hi = times[50], times[200]
    chosen = all_pages(c, since=lo, until=hi)
    assert {r["job_id"] for r in chosen} == {r["job_id"] for r in everything if lo <= r["updated_at"] < hi}


def test_a_failed_jobs_page_has_its_message_traceback_and_links(small_log):
    c = client(small_log)
    failed = c.get("/api/jobs", params={"status": "error", "limit": 1}).json()["jobs"][0]
    job = c.get(f"/api/jobs/{failed['job_id']}").json()
    assert job["error_type"] == "ValueError" and "outside the image's range" in job["error_message"]
    assert job["traceback"].startswith("Traceback (most recent call last)")
    assert [e["status"] for e in job["events"]][:2] == ["created", "queued"]
    summary = c.get("/api/jobs", params={"function": "summarize", "limit": 1}).json()["jobs"][0]
    assert len(c.get(f"/api/jobs/{summary['job_id']}").json()["inputs"]) > 5
    assert c.get("/api/jobs/nope").status_code == 404


def test_changes_follow_the_events_cursor(small_log):
    c = client(small_log)
    seq = c.get("/api/summary").json()["seq"]
    assert c.get("/api/changes", params={"after": seq}).json()["count"] == 0
    running = c.get("/api/jobs", params={"status": "running", "limit": 1}).json()["jobs"][0]
    logfill.set_status(small_log, running["job_id"], "finished", ended_at=time.time())
    ch = c.get("/api/changes", params={"after": seq}).json()
    assert ch["count"] == 1 and ch["job_ids"] == [running["job_id"]] and ch["seq"] == seq + 1
    assert c.get("/api/jobs", params={"limit": 1}).json()["jobs"][0]["status"] == "finished"


def test_graph_counts_timeline_batches_runs(small_log):
    c = client(small_log)
    run_id = c.get("/api/runs").json()["runs"][0]["run_id"]
    g = c.get(f"/api/runs/{run_id}/graph").json()
    ids = {n["job_id"] for n in g["nodes"]}
    assert g["edges"] and all(e["source"] in ids and e["target"] in ids for e in g["edges"])
    counts = c.get("/api/counts").json()
    assert sum(counts["series"]["created"]) == 300 and len(counts["t"]) <= 240
    assert c.get("/api/timeline").json()["jobs"][0]["started_at"]
    batches = c.get("/api/batches").json()["batches"]
    assert any(b["handler"] == "SlurmJobHandler" for b in batches)
    assert sum(b["jobs"] for b in batches) == c.get("/api/jobs", params={"count": 1}).json()["total"] - sum(
        1 for r in all_pages(c) if r["batch"] is None)


def test_counts_over_time_stay_right_as_events_arrive(small_log):
    log = EventLog(small_log)
    log.counts_over_time()
    for job in all_pages(client(small_log), status="running"):
        logfill.set_status(small_log, job["job_id"], "finished")
    later = log.counts_over_time()
    fresh = TimeCounts()
    fresh.update(log._conn())
    assert sum(later["series"]["finished"]) == sum(fresh.snapshot()["series"]["finished"])
    n = log._conn().execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert sum(sum(v) for v in later["series"].values()) == n


def test_bad_parameters_answer_400_with_the_name(small_log):
    r = client(small_log).get("/api/jobs", params={"since": "yesterday"})
    assert r.status_code == 400 and "since" in r.json()["error"]


def test_loopback_mode_refuses_other_host_names(small_log):
    assert client(small_log).get("/api/info").status_code == 200
    assert client(small_log, base="http://localhost:8765").get("/api/info").status_code == 200
    r = client(small_log, base="http://attacker.example:8765").get("/api/info")
    assert r.status_code == 403 and "localhost only" in r.text


def test_token_mode_needs_the_token(small_log):
    c = client(small_log, token="s3cret-token", base="http://192.0.2.10:8765")
    for path in ("/", "/api/jobs", "/static/main.js"):
        assert c.get(path).status_code == 401
    assert c.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/?token=wrong").status_code == 401
    assert c.get("/api/jobs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    r = c.get("/?token=s3cret-token&x=1")
    assert r.status_code == 303 and r.headers["location"] == "/?x=1"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert c.get("/api/jobs").status_code == 200  # the cookie


def test_writes_need_the_same_origin_header_and_a_bus(small_log):
    c = client(small_log)
    assert c.post("/api/bus/jobs/x/cancel").status_code == 403
    r = c.post("/api/bus/jobs/x/cancel", headers={"X-Hither-Monitor": "1"})
    assert r.status_code == 400 and "--mongo-url" in r.json()["error"]
    assert c.get("/api/bus").json() == {"enabled": False}


def test_security_headers(small_log):
    r = client(small_log).get("/")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


def test_missing_or_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(LogError, match="no event log at"):
        EventLog(str(tmp_path / "nope.sqlite3"))
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(LogError, match="not a hither event log"):
        EventLog(str(junk))


def test_the_log_is_opened_read_only(small_log):
    import sqlite3

    log = EventLog(small_log)
    with pytest.raises(sqlite3.OperationalError):
        log._conn().execute("DELETE FROM jobs")


def test_an_empty_log_then_its_first_jobs(tmp_path):
    path = str(tmp_path / "empty.sqlite3")
    logfill.connect(path).close()  # the schema, no job yet
    c = client(path)
    assert c.get("/api/jobs", params={"count": 1}).json() == {"jobs": [], "next": None, "total": 0}
    assert c.get("/api/counts").json()["t"] == []
    assert c.get("/api/timeline").json() == {"jobs": []}
    assert c.get("/api/summary").json()["seq"] == 0
    logfill.fill(path, n_jobs=30, n_runs=1)
    assert sum(c.get("/api/counts").json()["series"]["created"]) == 30
    assert c.get("/api/changes", params={"after": 0}).json()["count"] > 30


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
                                           ("localhost", True), ("0.0.0.0", False), ("192.168.1.2", False),
                                           ("example.org", False), ("", False)])
def test_what_counts_as_loopback(host, loopback):
    from hither_monitor.guard import is_loopback

    assert is_loopback(host) is loopback


def test_command_lines_lose_their_credentials(small_log):
    con = logfill.connect(small_log)
    run_id = con.execute("SELECT run_id FROM runs LIMIT 1").fetchone()[0]
    con.execute("UPDATE runs SET argv = ? WHERE run_id = ?",
                ("python prog.py --mongo-url mongodb://ana:hunter2@db:27017/x --password=pw1 --token tk2 --n 3", run_id))
    con.commit()
    con.close()
    c = client(small_log)
    argv = [r for r in c.get("/api/runs").json()["runs"] if r["run_id"] == run_id][0]["argv"]
    assert argv == "python prog.py --mongo-url mongodb://***@db:27017/x --password=*** --token *** --n 3"
    job = c.get("/api/jobs", params={"run": run_id, "limit": 1}).json()["jobs"][0]
    assert "hunter2" not in c.get(f"/api/jobs/{job['job_id']}").text

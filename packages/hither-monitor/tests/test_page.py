"""The page in a real headless chromium: a real program's jobs, live updates, a failed job, filters, paging, the token."""
import os
import statistics
import subprocess
import sys
import threading
import time

import logfill
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def rows(page):
    page.wait_for_selector("#jobs-body tr[data-job]", timeout=15000)
    return page.eval_on_selector_all("#jobs-body tr[data-job]", "rs => rs.map(r => [r.dataset.job, r.className])")


def test_the_table_filters_and_pages(small_log, serve, page):
    s = serve(small_log)
    page.goto(s.url)
    first = rows(page)
    assert len(first) == 50
    assert "of 300" in page.inner_text("#total")
    page.click("#older")
    page.wait_for_function("first => document.querySelector('#jobs-body tr').dataset.job !== first", arg=first[0][0])
    second = rows(page)
    assert not {j for j, _ in first} & {j for j, _ in second}
    page.click("#newer")
    page.wait_for_function("first => document.querySelector('#jobs-body tr').dataset.job === first", arg=first[0][0])
    page.wait_for_selector("#f-status option[value=error]", state="attached")
    page.select_option("#f-status", "error")
    page.wait_for_function("() => location.hash.includes('status=error')")
    page.wait_for_function("() => [...document.querySelectorAll('#jobs-body tr[data-job]')].every(r => r.className === 'r-error')")
    errors = rows(page)
    assert errors and all(c == "r-error" for _, c in errors)
    page.select_option("#f-function", "segment_cells")
    page.wait_for_function("() => location.hash.includes('function=segment_cells')")
    page.wait_for_timeout(300)
    texts = page.eval_on_selector_all("#jobs-body tr[data-job] td:nth-child(2)", "ts => ts.map(t => t.textContent)")
    assert texts and all(t.startswith("segment_cells") for t in texts)


def test_the_page_updates_when_a_running_job_finishes(small_log, serve, page):
    s = serve(small_log)
    page.goto(s.url + "#/jobs?status=running")
    running = rows(page)[0][0]
    page.evaluate("window.notReloaded = true")
    logfill.set_status(small_log, running, "finished", ended_at=time.time())
    page.goto(s.url + "#/jobs")  # a hash change: no reload
    page.wait_for_selector(f"#jobs-body tr[data-job='{running}'].r-finished", timeout=10000)
    # and a job that changes while the page is open shows without reload
    other = logfill.connect(small_log).execute("SELECT job_id FROM jobs WHERE status = 'queued' LIMIT 1").fetchone()[0]
    logfill.set_status(small_log, other, "error", error_type="RuntimeError", error_message="lost the plate reader")
    page.wait_for_selector(f"#jobs-body tr[data-job='{other}'].r-error", timeout=10000)
    assert "lost the plate reader" in page.inner_text(f"#jobs-body tr[data-job='{other}']")
    assert page.evaluate("window.notReloaded") is True


def test_a_failed_jobs_page_shows_message_and_traceback(small_log, serve, page):
    s = serve(small_log)
    page.goto(s.url + "#/jobs?status=error")
    failed = rows(page)[0][0]
    page.click(f"#jobs-body tr[data-job='{failed}'] a")
    page.wait_for_selector("#job-error")
    text = page.inner_text("#job-error")
    assert "ValueError: level 300 is outside the image's range 0..255" in text
    assert "Traceback (most recent call last)" in text


def test_views_render(small_log, serve, page):
    s = serve(small_log)
    page.goto(s.url + "#/chart")
    page.wait_for_selector("#chart .uplot", timeout=15000)
    page.goto(s.url + "#/timeline")
    page.wait_for_selector("#timeline rect", timeout=15000)
    page.goto(s.url + "#/runs")
    page.wait_for_selector("#runs a")
    page.click("#runs tbody tr:first-child td:last-child a")
    page.wait_for_selector("#graph .node", timeout=15000)
    assert page.eval_on_selector_all("#graph .edge", "es => es.length") > 0
    page.goto(s.url + "#/batches")
    page.wait_for_selector("#batches td")
    assert "SlurmJobHandler" in page.inner_text("#batches")


def test_the_token_is_needed_beyond_loopback(small_log, page):
    import uvicorn

    from hither_monitor.app import create_app
    from hither_monitor.eventlog import EventLog

    # the guard as `serve --host 0.0.0.0` makes it, but listening on loopback only
    app = create_app(EventLog(small_log), token="tok-123")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        response = page.goto(url)
        assert response.status == 401 and "needs its token" in page.inner_text("body")
        assert page.goto(url + "api/jobs").status == 401
        page.goto(url + "?token=tok-123")
        assert "token" not in page.url
        assert len(rows(page)) == 50
        page.reload()
        assert len(rows(page)) == 50  # the cookie
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.slow
def test_first_paint_with_100k_jobs_under_a_second(big_log, serve, chromium):
    s = serve(big_log)
    times = []
    for _ in range(4):
        context = chromium.new_context()
        pg = context.new_page()
        pg.goto(s.url)
        pg.wait_for_selector("#jobs-body tr[data-job]", timeout=30000)
        times.append(float(pg.evaluate("document.body.dataset.firstTable")))
        assert "of 100,000" in pg.inner_text("#total")
        context.close()
    warm = times[1:]  # the first load also reads the log from disk into the page cache
    print(f"first paint with 10^5 jobs: {[round(t) for t in times]} ms (median of warm loads "
          f"{statistics.median(warm):.0f} ms)")
    assert statistics.median(warm) < 1000, times


def test_a_real_programs_jobs(tmp_path, serve, page):
    db = str(tmp_path / "monitor.sqlite3")
    flag = tmp_path / "flag"
    env = {**os.environ, "HITHER_MONITOR_DB": db, "HITHER_MONITOR": "1"}
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "monitored_program.py"), str(flag)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))
    try:
        out = []  # the jobs' console output comes through too (print in a worker)
        while not out or out[-1].strip() != "READY":
            line = proc.stdout.readline()
            if not line:  # the program ended without READY
                proc.wait(30)
                raise AssertionError(f"the program failed: {''.join(out)}{proc.stderr.read()}")
            out.append(line)
        deadline = time.monotonic() + 10
        while not os.path.exists(db) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not os.path.exists(db):
            pytest.skip("hither-core records no job events yet (the recorder of issue 23 is on the `monitor` "
                        "branch; merge it)")
        s = serve(db)
        page.goto(s.url)
        page.wait_for_function("() => document.querySelectorAll('#jobs-body tr[data-job]').length >= 6", timeout=15000)
        text = page.inner_text("#jobs")
        assert "monitored_add" in text and "monitored_fail cannot take 42" in text
        waiting = page.wait_for_selector("#jobs-body tr.r-running", timeout=15000).get_attribute("data-job")
        page.evaluate("window.notReloaded = true")
        flag.write_text("go")
        page.wait_for_selector(f"#jobs-body tr[data-job='{waiting}'].r-finished", timeout=20000)
        assert page.evaluate("window.notReloaded") is True
        page.goto(s.url + "#/jobs?function=monitored_add")
        added = rows(page)[0][0]
        page.goto(s.url + f"#/job/{added}")
        page.wait_for_selector("#console-stdout")
        assert "adding " in page.inner_text("#console-stdout")
        assert "a=" in page.inner_text("#job-fields")  # the arguments' summary
        page.goto(s.url + "#/jobs?status=error")
        failed = rows(page)[0][0]
        page.goto(s.url + f"#/job/{failed}")
        page.wait_for_selector("#job-error")
        assert "monitored_fail cannot take 42" in page.inner_text("#job-error")
        proc.wait(60)
    finally:
        if proc.poll() is None:
            flag.write_text("go")
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_the_bus_view_streams_console_output_and_cancels(small_log, serve, page, mongo_url):
    pytest.importorskip("hither_remote")
    import uuid

    from busfill import add_console, seed_bus

    database = f"hither_monitor_page_{uuid.uuid4().hex[:8]}"
    writer = seed_bus(mongo_url, database)
    try:
        s = serve(small_log, "--mongo-url", mongo_url, "--database", database)
        page.goto(s.url + "#/bus")
        page.wait_for_selector("#bus-resources td")
        assert "4" in page.inner_text("#bus-resources") and "alive" in page.inner_text("#bus-resources")
        page.on("dialog", lambda d: d.accept())
        page.click("#bus-jobs button.cancel[data-job='queued_job']")
        page.wait_for_selector("#bus-jobs tr[data-job='queued_job'] .s-cancelled", timeout=10000)
        assert writer.get("queued_job").status.value == "cancelled"
        # a job of the log run on the bus links to its bus page (found by its hash)
        con = logfill.connect(small_log)
        local = con.execute("SELECT job_id FROM jobs WHERE status = 'running' LIMIT 1").fetchone()[0]
        con.execute("UPDATE jobs SET job_hash = 'hash-running_job' WHERE job_id = ?", (local,))
        con.commit()
        con.close()
        page.goto(s.url + f"#/job/{local}")
        page.click("#job-bus a")
        page.wait_for_function("() => location.hash === '#/bus/job/running_job'")
        page.wait_for_function("() => document.querySelector('#bus-console').textContent.includes('line 2')")
        add_console(writer, 3, "line 3, live\n")
        page.wait_for_function("() => document.querySelector('#bus-console').textContent.includes('line 3, live')",
                               timeout=10000)
        assert page.inner_text("#bus-console").count("line 0") == 1
    finally:
        writer.client.drop_database(database)
        writer.close()

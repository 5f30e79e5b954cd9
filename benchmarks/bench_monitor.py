"""hither-monitor: a program's in-process job throughput with the monitor page open vs closed.

    python benchmarks/bench_monitor.py [--quick] [--client poller|browser] [--seconds S]

A log prefilled with 10^5 jobs (10^4 with --quick); ``hither-monitor serve`` over it for
the whole run. Each measurement is a fresh program (a subprocess) running DefaultJobHandler
jobs for S seconds, recording to that log. "Open": a client reads the API as the page does
(every second ``/api/changes``; on changes ``/api/summary`` and the first page of
``/api/jobs``) - a poller thread here, or the real page in headless chromium
with ``--client browser``. Five open/closed pairs, interleaved (the order alternates); the
figure is the ratio of the medians. Target: a drop of at most 5%.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "packages", "hither-monitor", "tests"))


def program(seconds: float) -> None:
    """The measured program: in-process jobs for ``seconds``; prints jobs per second."""
    import hither as hi
    from bench_funcs import noop

    with hi.Config(job_handler=hi.DefaultJobHandler()):
        for i in range(200):
            noop.run(x=i).wait()
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            for i in range(100):
                noop.run(x=n + i).wait()
            n += 100
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"jobs": n, "seconds": dt, "per_s": n / dt, "cpu_us": cpu / n * 1e6}), flush=True)


def run_program(db: str, seconds: float) -> dict:
    """One measured program: its jobs per second and its CPU microseconds per job (the
    latter hardly moves with the machine's load: the figure to trust on a busy machine)."""
    env = {**os.environ, "HITHER_MONITOR_DB": db, "HITHER_MONITOR": "1"}
    out = subprocess.run([sys.executable, __file__, "--program", str(seconds)], env=env, capture_output=True,
                         text=True, timeout=seconds * 10 + 120, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


class Poller:
    """The page's requests at the page's rate, in a thread."""

    def __init__(self, url: str) -> None:
        self.url, self.stop, self.requests = url, threading.Event(), 0
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def get(self, path: str) -> dict:
        self.requests += 1
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.load(r)

    def loop(self) -> None:
        seq = self.get("api/summary")["seq"]
        self.get("api/jobs?limit=50&count=1")
        while not self.stop.wait(1.0):
            ch = self.get(f"api/changes?after={seq}")
            if ch["count"]:  # as the page: the counts, then the first page (its total from the counts)
                seq = ch["seq"]
                self.get("api/summary")
                self.get("api/jobs?limit=50")

    def __enter__(self) -> "Poller":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


class Browser:
    """The real page, open in headless chromium, for the time of a measurement."""

    def __init__(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        self.url = url
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        self.page = None

    def __enter__(self) -> "Browser":
        self.page = self.browser.new_page()
        self.page.goto(self.url)
        self.page.wait_for_selector("#jobs-body tr")
        return self

    def __exit__(self, *exc: object) -> None:
        self.page.close()

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(db: str) -> "tuple[subprocess.Popen, str]":
    proc = subprocess.Popen([sys.executable, "-m", "hither_monitor.cli", "serve", "--db", db, "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"open (http://\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError("hither-monitor serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--client", choices=["poller", "browser"], default="poller")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--program", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.program is not None:
        program(args.program)
        return
    import logfill

    seconds = args.seconds or (2.0 if args.quick else 6.0)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "monitor.sqlite3")
        logfill.fill(db, n_jobs=10_000 if args.quick else 100_000)
        proc, url = serve(db)
        browser = Browser(url) if args.client == "browser" else None
        try:
            closed: list = []
            opened: list = []
            server_load: list = []  # the server's CPU seconds per second while the page is open
            for i in range(args.pairs):
                for page_open in ((False, True) if i % 2 == 0 else (True, False)):
                    if page_open:
                        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                        with (browser if browser is not None else Poller(url)):
                            opened.append(run_program(db, seconds))
                        server_load.append((cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0))
                    else:
                        closed.append(run_program(db, seconds))
                print(f"pair {i + 1}: closed {closed[-1]['per_s']:.0f} jobs/s ({closed[-1]['cpu_us']:.0f} us CPU/job), "
                      f"open {opened[-1]['per_s']:.0f} jobs/s ({opened[-1]['cpu_us']:.0f} us CPU/job)", flush=True)
        finally:
            if browser is not None:
                browser.close()
            proc.terminate()
            proc.wait(10)
    c, o = (statistics.median(r["per_s"] for r in runs) for runs in (closed, opened))
    cc, co = (statistics.median(r["cpu_us"] for r in runs) for runs in (closed, opened))
    print(f"in-process throughput, page open ({args.client}): {o:.0f} jobs/s | closed: {c:.0f} jobs/s | "
          f"drop {100 * (1 - o / c):.1f}% (median of {args.pairs} interleaved runs of {seconds:g} s) | target <= 5%")
    print(f"program CPU per job, page open: {co:.1f} us | closed: {cc:.1f} us | change {100 * (co / cc - 1):+.1f}% | "
          f"server CPU while open: {100 * statistics.median(server_load):.1f}% of a core")

if __name__ == "__main__":
    main()

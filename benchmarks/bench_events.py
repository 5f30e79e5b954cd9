"""hither-core's job event log (issue 23): what recording costs a job, on against off.

    python benchmarks/bench_events.py [--quick]

A no-op ``@hi.function`` run N times on the DefaultJobHandler (``f.run(x=i).wait()``),
with ``HITHER_MONITOR=0`` and with recording on, interleaved (off, on, off, on, ...), in
one process. Per job: CPU time of the calling thread (``time.thread_time``: what the job's
own thread pays, the figure the target is about) and CPU time of the whole process
including the recorder's writer thread and the final flush (``time.process_time``: what
the log costs the program in all), and the CPU time of the log's writer process (folding,
JSON and SQLite, on another core: ``os.times`` of reaped children). Medians of the runs,
with the spread of on - off over the pairs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from hither.events import open_log, recorder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_funcs import noop  # noqa: E402


def _children() -> float:
    t = os.times()
    return t.children_user + t.children_system


def one_run(n: int, on: bool) -> tuple:
    """(thread CPU, process CPU, wall, writer process CPU, wall of the jobs alone) seconds
    for ``n`` jobs, the flush of the log included except in the last."""
    os.environ["HITHER_MONITOR"] = "1" if on else "0"
    recorder.reset()
    noop.run(x=-1).wait()  # starts the recorder (or not) before the clock
    t_thread, t_proc, t_wall = time.thread_time(), time.process_time(), time.perf_counter()
    t_children = _children()
    for i in range(n):
        noop.run(x=i).wait()
    thread = time.thread_time() - t_thread
    loop_wall = time.perf_counter() - t_wall
    recorder.reset()  # the writer writes the rest and stops
    return (thread, time.process_time() - t_proc, time.perf_counter() - t_wall,
            _children() - t_children, loop_wall)


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("-n", type=int, default=None, help="jobs per run (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="pairs of runs (default 5)")
    args = p.parse_args(argv)
    n = args.n or (2000 if args.quick else 20000)
    folder = tempfile.mkdtemp(prefix="hither-bench-events-")
    os.environ["HITHER_MONITOR_DB"] = os.path.join(folder, "monitor.sqlite3")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}; {n} jobs per run, "
          f"{args.rounds} interleaved pairs", flush=True)
    one_run(min(n, 2000), False)  # warm up (imports, the default handler)
    one_run(min(n, 2000), True)
    res: dict = {False: [], True: []}
    for _ in range(args.rounds):
        for on in (False, True):
            res[on].append(one_run(n, on))
    lines = []
    print(f"load average at the end: {os.getloadavg()[0]:.2f}", flush=True)
    for k, what in ((0, "caller's thread CPU"), (4, "wall of the jobs (what the program waits)"),
                    (1, "program's CPU (all its threads)"), (2, "wall incl. the last flush"),
                    (3, "the writer process's CPU")):
        off = [r[k] / n * 1e6 for r in res[False]]
        on_ = [r[k] / n * 1e6 for r in res[True]]
        diff = sorted(b - a for a, b in zip(off, on_))
        target = "<= 5 us" if k in (0, 4) else "(shown)"
        line = (f"noop f.run(x=i).wait() x{n}, {what} per job: monitor on {statistics.median(on_):.2f} us | "
                f"off {statistics.median(off):.2f} us | added {statistics.median(diff):.2f} us "
                f"(median of {len(diff)} interleaved pairs, spread {diff[0]:.2f} to {diff[-1]:.2f}) | target {target}")
        print(line, flush=True)
        lines.append({"name": what, "line": line})
    con = open_log(os.environ["HITHER_MONITOR_DB"])
    jobs = con.execute("SELECT count(*) FROM jobs").fetchone()[0]
    con.close()
    print(f"  jobs in the log: {jobs} (expected {(args.rounds + 1) * (n + 1) - n + min(n, 2000)})", flush=True)
    return lines


if __name__ == "__main__":
    main()

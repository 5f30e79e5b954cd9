"""hither-remote benchmarks over the MongoDB-protocol server of ``scripts/services.sh`` (loopback).

    python benchmarks/bench_remote.py            # 5 interleaved runs of each figure
    python benchmarks/bench_remote.py --quick    # 3 runs, fewer jobs (a smoke run)

1. Round trip of a trivial job: ``noop.run(x=i).wait()`` through a ``RemoteJobHandler`` to a
   compute resource (``hi.ComputeResource(job_handler=hi.ParallelJobHandler(2))`` in a
   process of its own), per job, beside the same job on a local ``DefaultJobHandler``.
   Target: median under 50 ms.
2. 500 trivial jobs submitted at once through one such resource: jobs/s, beside the same
   jobs on a local ``ParallelJobHandler(2)``. Target: at least 100 jobs/s. Then where the
   CPU of a remote job goes (from /proc, over the same runs): the bus server (SecantusDB,
   when found on the port of ``HITHER_BENCH_MONGO_URL``), the resource with its job server
   and job processes, and this client; and the bus round trips per job of this client and
   of the resource, by command (pymongo command listeners).

Client and resource share the bus (a private database per run, dropped at the end) and a
store folder under /tmp (each with a cache folder of its own). Runs are interleaved (ours,
baseline, ours, ...); each figure is the median with the spread (min-max).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hither as hi  # noqa: E402
from bench_funcs import noop  # noqa: E402  (importable by the resource's job processes)

MONGO_URL = os.environ.get("HITHER_BENCH_MONGO_URL", "mongodb://127.0.0.1:27017")
#: the shared secret: made by the benchmark, handed to its resource process in the environment
SECRET = os.environ.setdefault("HITHER_REMOTE_SECRET", "bench-secret-" + uuid.uuid4().hex)


class CommandCounter:
    """Bus round trips of this process by command name and collection (a pymongo command
    listener, registered before any client is made): ``update:jobs``, ``find:runs``,
    ``getMore`` (change streams included), ...; ``NAME#``: the statements (documents) of
    the inserts and updates (a bulk write is one round trip of several)."""

    def __init__(self) -> None:
        import collections

        from pymongo import monitoring

        self.counts: "collections.Counter[str]" = collections.Counter()
        counter = self

        class _Listener(monitoring.CommandListener):
            def started(self, event: monitoring.CommandStartedEvent) -> None:
                name = event.command_name
                coll = event.command.get(name)
                if isinstance(coll, str) and name != "getMore":
                    name = f"{name}:{coll.replace('hither_remote_', '')}"
                counter.counts[name] += 1
                stmts = event.command.get("updates") or event.command.get("documents")
                if isinstance(stmts, list):
                    counter.counts[name + "#"] += len(stmts)

            def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
                pass

            def failed(self, event: monitoring.CommandFailedEvent) -> None:
                pass

        monitoring.register(_Listener())

    def snapshot(self) -> Dict[str, int]:
        return dict(self.counts)


def serve_main(database: str, store_dir: str, ready_file: str) -> None:
    """The resource process: ``ComputeResource`` with a ``ParallelJobHandler(2)``; on
    SIGUSR1 it writes its bus round trips so far to ``READY_FILE.counts`` (JSON)."""
    import json

    from hither_store import Store

    logging.basicConfig(level=logging.WARNING)
    counter = CommandCounter()

    def dump(signum: int, frame: object) -> None:
        with open(ready_file + ".tmp", "w") as f:
            json.dump(counter.snapshot(), f)
        os.replace(ready_file + ".tmp", ready_file + ".counts")

    signal.signal(signal.SIGUSR1, dump)
    store = Store(store_dir, cache_dir=store_dir + "-resource-cache")
    cr = hi.ComputeResource(database=hi.Database(mongo_url=MONGO_URL, database=database),
                            compute_resource_id="bench", job_handler=hi.ParallelJobHandler(2),
                            store=store, secret=SECRET, work_dir=os.path.join(os.path.dirname(store_dir), "cr-jobs"))
    open(ready_file, "w").close()
    cr.run()


class Remote:
    """A resource process and a client handler on a private bus database."""

    def __init__(self) -> None:
        from hither_store import Store

        self.database = f"hither_bench_{uuid.uuid4().hex[:10]}"
        self.scratch = tempfile.mkdtemp(prefix="hither-bench-remote-")
        store_dir = os.path.join(self.scratch, "store")
        self.ready = ready = os.path.join(self.scratch, "ready")
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", self.database, store_dir, ready],
                                     env=dict(os.environ, HITHER_TEMP_DIR=os.path.join(self.scratch, "cr-tmp")))
        self.jh = hi.RemoteJobHandler(database=hi.Database(mongo_url=MONGO_URL, database=self.database),
                                      compute_resource_id="bench", secret=SECRET,
                                      store=Store(store_dir, cache_dir=store_dir + "-client-cache"))
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(ready):
                assert self.proc.poll() is None and time.monotonic() < deadline, "the resource did not start"
                time.sleep(0.05)
            with hi.Config(job_handler=self.jh):  # warm: the job server is up, the code bundle stored
                noop.run(x=-1).wait(60)
        except BaseException:
            self.close()
            raise

    def resource_counts(self) -> Dict[str, int]:
        """The resource process's bus round trips so far, by command (see ``serve_main``)."""
        import json

        path = self.ready + ".counts"
        if os.path.exists(path):
            os.remove(path)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            assert time.monotonic() < deadline, "the resource did not write its counts"
            time.sleep(0.02)
        with open(path) as f:
            counts: Dict[str, int] = json.load(f)
        return counts

    def close(self) -> None:
        self.jh.shutdown()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        import pymongo

        client = pymongo.MongoClient(MONGO_URL, serverSelectionTimeoutMS=3000)
        client.drop_database(self.database)
        client.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def round_trip(jh: hi.JobHandler, jobs: int) -> float:
    """Median seconds of ``noop.run(x=i).wait()`` over ``jobs`` jobs one after another."""
    times = []
    with hi.Config(job_handler=jh):
        for i in range(jobs):
            t0 = time.perf_counter()
            assert noop.run(x=i).wait(60) == i
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(jh: hi.JobHandler, jobs: int) -> float:
    """Jobs per second of ``jobs`` trivial jobs submitted at once."""
    t0 = time.perf_counter()
    with hi.Config(job_handler=jh):
        js = [noop.run(x=i) for i in range(jobs)]
    assert [j.wait(600) for j in js] == list(range(jobs))
    return jobs / (time.perf_counter() - t0)


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants so far: their own user+system time and
    that of children they reaped (a job server's ended job processes)."""
    parents: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            f = _stat(p)
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        todo += parents.get(p, [])
    return total / _TICK


def bus_server_pid() -> Optional[int]:
    """The pid of the MongoDB-protocol server (SecantusDB or mongod) listening on the port of
    ``MONGO_URL`` on this machine, if found (27017 when its command line names no port)."""
    from urllib.parse import urlsplit

    port = str(urlsplit(MONGO_URL.split(",")[0]).port or 27017).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if not any(b"secantusd" in a for a in args) and not args[0].endswith(b"mongod"):
                continue
            given = args[args.index(b"--port") + 1] if b"--port" in args[:-1] else b"27017"
            if given == port:
                return int(entry)
    return None


class CpuPerJob:
    """CPU ms per job of the bus server, the resource (with its job server and job
    processes) and this client, over the runs measured with ``measure``."""

    def __init__(self, resource_pid: int, remote: Optional["Remote"] = None,
                 client_counter: Optional[CommandCounter] = None) -> None:
        self.pids = {"bus server": bus_server_pid(), "resource + job server + job processes": resource_pid}
        self.runs: List[Dict[str, float]] = []
        self.remote, self.client_counter = remote, client_counter
        self.trips: List[Dict[str, Dict[str, float]]] = []  # per run: side -> command -> per job

    def _now(self) -> Dict[str, float]:
        t = os.times()
        now = {"client": t.user + t.system}
        for name, pid in self.pids.items():
            if pid is not None:
                now[name] = tree_cpu(pid)
        return now

    def _trips(self) -> Dict[str, Dict[str, int]]:
        if self.remote is None or self.client_counter is None:
            return {}
        return {"client": self.client_counter.snapshot(), "resource": self.remote.resource_counts()}

    def measure(self, run: Callable[[], float], jobs: int) -> float:
        trips0 = self._trips()
        before = self._now()
        value = run()
        after = self._now()
        trips1 = self._trips()
        self.runs.append({k: (after[k] - before[k]) * 1000.0 / jobs for k in after})
        self.trips.append({side: {c: (n - trips0[side].get(c, 0)) / jobs for c, n in trips1[side].items()
                                  if n - trips0[side].get(c, 0)} for side in trips1})
        return value

    def trips_report(self) -> str:
        """Bus round trips per job, median over the runs: each side's total and by command."""
        if not self.trips or not self.trips[0]:
            return ""
        out = []
        for side in self.trips[0]:
            commands = sorted({c for r in self.trips for c in r[side]})
            total = statistics.median(sum(v for c, v in r[side].items() if not c.endswith("#"))
                                      for r in self.trips)
            parts = ", ".join(f"{c[:-1] + ' statements' if c.endswith('#') else c} "
                              f"{statistics.median(r[side].get(c, 0.0) for r in self.trips):.2f}"
                              for c in commands)
            out.append(f"{side} {total:.2f} ({parts})")
        return f"bus round trips per remote job (median of {len(self.trips)} runs): " + "; ".join(out)

    def report(self) -> str:
        if not self.runs:
            return ""
        parts = {k: statistics.median(r[k] for r in self.runs) for k in self.runs[0]}
        total = statistics.median(sum(r.values()) for r in self.runs)
        return (f"CPU per remote job, ms (median of {len(self.runs)} runs): all {total:.1f} = "
                + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))


def line(figure: str, a: List[float], b: List[float], baseline: str, target: str, unit: str,
         scale: float = 1.0) -> None:
    ma, mb = statistics.median(a), statistics.median(b)
    fmt = (lambda v: f"{v * scale:.4g} {unit}")
    print(f"{figure}: {fmt(ma)} (spread {fmt(min(a))}-{fmt(max(a))}) | baseline {baseline}: {fmt(mb)} "
          f"(spread {fmt(min(b))}-{fmt(max(b))}) | ratio {ma / mb:.4g} | target {target} "
          f"| median (min-max) of {len(a)} interleaved runs", flush=True)


def interleave(ours: Callable[[], float], base: Callable[[], float], repeat: int) -> tuple:
    a, b = [], []
    for _ in range(repeat):
        a.append(ours())
        b.append(base())
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--only", choices=["roundtrip", "throughput"], default=None)
    ap.add_argument("--serve", nargs=3, metavar=("DATABASE", "STORE_DIR", "READY_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_main(*args.serve)
        return
    logging.basicConfig(level=logging.WARNING)
    repeat = args.repeat or (3 if args.quick else 5)
    rt_jobs = 10 if args.quick else 30
    n_jobs = 100 if args.quick else 500
    try:
        import pymongo

        pymongo.MongoClient(MONGO_URL, serverSelectionTimeoutMS=2000).admin.command("ping")
    except Exception as exc:  # noqa: BLE001
        print(f"skipped: no MongoDB-protocol server at {MONGO_URL} ({exc}); bash scripts/services.sh mongo")
        return
    print(f"machine: {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    client_counter = CommandCounter()
    remote = Remote()
    try:
        if args.only in (None, "roundtrip"):
            local = hi.DefaultJobHandler()
            a, b = interleave(lambda: round_trip(remote.jh, rt_jobs), lambda: round_trip(local, rt_jobs), repeat)
            line(f"round trip of a trivial remote job (median of {rt_jobs} in a row; resource with "
                 "ParallelJobHandler(2))", a, b, "the same job on a local DefaultJobHandler",
                 "< 50 ms (absolute)", "ms", 1000.0)
        if args.only in (None, "throughput"):
            par = hi.ParallelJobHandler(2)
            try:
                cpu = CpuPerJob(remote.proc.pid, remote, client_counter)
                a, b = interleave(lambda: cpu.measure(lambda: throughput(remote.jh, n_jobs), n_jobs),
                                  lambda: throughput(par, n_jobs), repeat)
            finally:
                par.shutdown()
            line(f"{n_jobs} trivial jobs through one resource (ParallelJobHandler(2)), submitted at once",
                 a, b, "the same jobs on a local ParallelJobHandler(2)", ">= 100 jobs/s (absolute)", "jobs/s")
            print(cpu.report(), flush=True)
            print(cpu.trips_report(), flush=True)
    finally:
        remote.close()
        print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()

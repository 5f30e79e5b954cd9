"""Job server benchmark: per-job cost of running job directories through one long-lived
``hither.outside.jobserver.JobServer`` (a fork per job) vs ``python -m hither.runtime JOB_DIR`` (a new
interpreter per job), measured in the same run.

    python benchmarks/bench_jobserver.py            # 40 jobs per run, 7 runs
    python benchmarks/bench_jobserver.py --quick    # 10 jobs per run, 5 runs

Figures: a trivial job (returns a small dict), and a job that uses numpy (the server with
``preload=["numpy"]`` beside the per-job interpreter that imports numpy each time); then the
trivial job in a reused job process (``JobServer(reuse=1)``, what the in-machine handlers'
launchers use) beside a fork per job. Jobs run
one after another (submit, wait), so the figure is the latency a pilot adds per job. Each
figure is the median of interleaved runs (ours, baseline, ours, ...) with the spread
(min-max); the ratio is median ours / median baseline. Scratch files go to
benchmarks/_scratch/ and are removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from typing import Callable, List, Tuple

from hither.outside.jobserver import JobServer

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, "_scratch")

TRIVIAL = """
    def f(x):
        return {"x": x, "double": 2 * x}
"""
NUMPY = """
    import numpy as np
    def f(x):
        return float(np.arange(x + 10).sum())
"""


def write_job(job_dir: str, source: str, x: int) -> str:
    os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)
    spec = {"job_id": "b", "job_hash": "0" * 40, "function_name": "f", "function_version": "0",
            "module": "benchmod", "qualname": "f", "module_relpath": "benchmod.py",
            "sys_paths": [""], "handler": "bench"}
    with open(os.path.join(job_dir, "spec.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(job_dir, "args.json"), "w") as f:
        json.dump({"x": x}, f)
    with zipfile.ZipFile(os.path.join(job_dir, "code.zip"), "w") as z:
        z.writestr("benchmod.py", textwrap.dedent(source))
    return job_dir


def check(job_dir: str) -> None:
    if not os.path.exists(os.path.join(job_dir, "result.json")):
        raise SystemExit(f"benchmark job {job_dir} wrote no result")
    os.remove(os.path.join(job_dir, "result.json"))


def through(server: JobServer, dirs: List[str]) -> Callable[[], float]:
    """A timed run: ``dirs`` one after another through ``server``; seconds per job."""
    def timed() -> float:
        t0 = time.perf_counter()
        for d in dirs:
            end = server.submit(d).wait(60)
            if end.exit_code != 0:
                raise SystemExit(f"{d}: {end}")
            check(d)
        return (time.perf_counter() - t0) / len(dirs)
    return timed


def interleaved(repeat: int, ours: Callable[[], float], base: Callable[[], float]) -> Tuple[List[float], List[float]]:
    t_ours: List[float] = []
    t_base: List[float] = []
    for _ in range(repeat):
        t_ours.append(ours())
        t_base.append(base())
    return t_ours, t_base


def line(figure: str, ours: List[float], base: List[float], baseline: str, target: str) -> None:
    mo, mb = statistics.median(ours), statistics.median(base)
    print(f"{figure}: {mo * 1e3:.2f} ms (spread {min(ours) * 1e3:.2f}-{max(ours) * 1e3:.2f}) | "
          f"baseline {baseline}: {mb * 1e3:.2f} ms (spread {min(base) * 1e3:.2f}-{max(base) * 1e3:.2f}) | "
          f"ratio {mo / mb:.3f} | target {target}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.jobs, a.repeat = 10, 5
    print(f"machine: {os.cpu_count()} cores, python {platform.python_version()}", flush=True)
    base_dir = os.path.join(SCRATCH, f"jobserver-{uuid.uuid4().hex[:8]}")
    try:
        for label, source, preload in (("trivial job", TRIVIAL, []), ("numpy job", NUMPY, ["numpy"])):
            dirs = [write_job(os.path.join(base_dir, f"{label[:5]}-{i}"), source, i) for i in range(a.jobs)]
            server = JobServer(preload=preload).start()
            try:
                ours = through(server, dirs)

                def base() -> float:
                    t0 = time.perf_counter()
                    for d in dirs:
                        subprocess.run([sys.executable, "-m", "hither.runtime", d], check=True, cwd=d)
                        check(d)
                    return (time.perf_counter() - t0) / len(dirs)

                ours()  # warm the file-system cache for both
                t_ours, t_base = interleaved(a.repeat, ours, base)
            finally:
                server.close()
            pre = f", preload={preload}" if preload else ""
            line(f"{label} through one JobServer{pre}, per job (fork per job)", t_ours, t_base,
                 "python -m hither.runtime JOB_DIR per job", "< 1 (a fraction of an interpreter start)")
        # a reused job process (JobServer(reuse=1): what the in-machine handlers' launchers
        # use) beside a fork per job, both through a warm server
        dirs = [write_job(os.path.join(base_dir, f"reuse-{i}"), TRIVIAL, i) for i in range(a.jobs)]
        servers = {reuse: JobServer(reuse=reuse).start() for reuse in (0, 1)}
        try:
            through(servers[1], dirs)()
            through(servers[0], dirs)()
            t_ours, t_base = interleaved(a.repeat, through(servers[1], dirs), through(servers[0], dirs))
        finally:
            for server in servers.values():
                server.close()
        line("trivial job through one JobServer(reuse=1), per job (a reused job process)", t_ours, t_base,
             "the same server with a fork per job", "< 1")
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

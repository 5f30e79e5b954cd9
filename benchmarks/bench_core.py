"""hither-core benchmarks: each figure beside a baseline measured in the same run.

    hatch run bench            # all benchmark files
    python benchmarks/bench_core.py [--quick]

Ratios, not absolute times: the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import hither as hi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_funcs import echo, noop, sqr_with_delay  # noqa: E402  (importable by workers)


def row(name: str, value: float, unit: str, baseline_name: str, baseline: float, ratio: float,
        target: str) -> dict:
    line = (f"{name}: {value:.4g} {unit} | {baseline_name}: {baseline:.4g} {unit} | "
            f"ratio {ratio:.2f} | target {target}")
    print(line, flush=True)
    return {"name": name, "line": line}


def _noop(x):
    return x


def _median_spread(ratios: list) -> tuple:
    rs = sorted(ratios)
    return rs[len(rs) // 2], rs[0], rs[-1]


def row_median(name: str, values: list, unit: str, baseline_name: str, baselines: list,
               target: str) -> dict:
    """A row of interleaved runs: median times, and the median ratio with its spread."""
    ratios = [v / b for v, b in zip(values, baselines)]
    med, lo, hi_ = _median_spread(ratios)
    line = (f"{name}: {sorted(values)[len(values) // 2]:.4g} {unit} | {baseline_name}: "
            f"{sorted(baselines)[len(baselines) // 2]:.4g} {unit} | ratio {med:.2f} "
            f"(median of {len(ratios)} interleaved runs, spread {lo:.2f}-{hi_:.2f}) | target {target}")
    print(line, flush=True)
    return {"name": name, "line": line}


def bench_many_noops(n: int, rounds: int = 11) -> list:
    """ParallelJobHandler(2) against ProcessPoolExecutor(2), side by side: both pools stay
    warm and each round times one then the other."""
    jh = hi.ParallelJobHandler(num_workers=2)
    with hi.Config(job_handler=jh):  # warm the pool (workers start once)
        noop.run(x=-1).wait()
    t_his, t_ppes = [], []
    with cf.ProcessPoolExecutor(2) as ex:
        list(ex.map(_noop, range(4)))  # warm
        for _ in range(rounds):
            t = time.perf_counter()
            with hi.Config(job_handler=jh):
                jobs = [noop.run(x=i) for i in range(n)]
            out = [j.wait() for j in jobs]
            t_his.append(time.perf_counter() - t)
            assert out == list(range(n))
            del jobs, out
            t = time.perf_counter()
            futs = [ex.submit(_noop, i) for i in range(n)]
            [f.result() for f in futs]
            t_ppes.append(time.perf_counter() - t)
    jh.shutdown()
    rows = [row_median(f"{n} no-op jobs, ParallelJobHandler(2)", t_his, "s",
                       "ProcessPoolExecutor(2)", t_ppes, "<= 1.0x")]
    try:
        from joblib import Parallel, delayed

        Parallel(n_jobs=2)(delayed(_noop)(i) for i in range(4))
        t = time.perf_counter()
        Parallel(n_jobs=2)(delayed(_noop)(i) for i in range(n))
        t_jl = time.perf_counter() - t
        t_hi = sorted(t_his)[len(t_his) // 2]
        rows.append(row(f"{n} no-op jobs, ParallelJobHandler(2)", t_hi, "s",
                        "joblib.Parallel(n_jobs=2)", t_jl, t_hi / t_jl, "(shown)"))
    except ImportError:
        print("joblib not installed: skipped its comparison")
    return rows


def bench_default_overhead(n: int) -> list:
    for i in range(100):
        noop.run(x=i).wait()
    t = time.perf_counter()
    for i in range(n):
        noop.run(x=i).wait()
    per_job = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for i in range(n):
        noop(x=i)
    direct = (time.perf_counter() - t) / n * 1e6
    return [row("DefaultJobHandler f.run(x=i).wait() per job", per_job, "us",
                "direct call f(x=i)", direct, per_job / max(direct, 1e-9),
                f"overhead under 50 us (here {per_job - direct:.1f} us)")]


def bench_faq_parallel() -> list:
    job_handler = hi.ParallelJobHandler(num_workers=4)
    timer = time.time()
    with hi.Config(job_handler=job_handler):
        results = [sqr_with_delay.run(x=j, delay=1) for j in range(8)]
        hi.wait()
    elapsed = time.time() - timer
    assert [y.get_result() for y in results] == [j * j for j in range(8)]
    job_handler.shutdown()
    return [row("FAQ parallel example (8 x 1 s, 4 workers)", elapsed, "s", "ideal", 2.0,
                elapsed / 2.0, "<= 1.1x")]


_HASH_CHILD = r"""
import hashlib, resource, sys, time
import numpy as np
from hither.values.grammar import job_hash
n = int(sys.argv[1]); which = sys.argv[2]
a = np.random.default_rng(0).random(n)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if which == "hither":
    job_hash("f", "1", {"x": a})
elif which == "sha1":
    hashlib.sha1(memoryview(a).cast("B")).hexdigest()
else:
    import joblib; joblib.hash(a)
dt = time.perf_counter() - t
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(dt, (rss1 - rss0) / 1024)
"""


def _hash_child(n: int, which: str):
    out = subprocess.run([sys.executable, "-c", _HASH_CHILD, str(n), which], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def bench_hash(size_mb: int) -> list:
    n = size_mb * 1024 * 1024 // 8
    t_hi, mem_hi = _hash_child(n, "hither")
    t_sha, _ = _hash_child(n, "sha1")
    gb = size_mb / 1024
    rows = [row(f"hash {size_mb} MB float64 argument (job_hash)", gb / t_hi, "GB/s",
                "hashlib.sha1 over the buffer", gb / t_sha, t_sha / t_hi, ">= 0.8x"),
            row("  peak memory growth while hashing", mem_hi, "MB", "budget", 64, mem_hi / 64,
                "< 64 MB")]
    try:
        t_jl, _ = _hash_child(n, "joblib")
        rows.append(row(f"hash {size_mb} MB float64 argument (job_hash)", gb / t_hi, "GB/s",
                        "joblib.hash", gb / t_jl, t_jl / t_hi, "(shown)"))
    except subprocess.CalledProcessError:
        print("joblib not installed: skipped its comparison")
    return rows


def bench_big_array(size_mb: int, rounds: int = 7) -> list:
    a = np.random.default_rng(1).random(size_mb * 1024 * 1024 // 8)
    jh = hi.ParallelJobHandler(num_workers=1)
    d = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    t_his, t_nps = [], []
    with hi.Config(job_handler=jh):
        echo.run(x=np.zeros(10)).wait()  # warm
        for _ in range(rounds):
            t = time.perf_counter()
            b = echo.run(x=a).wait()
            float(b[::4096].sum())  # touch the result
            t_his.append(time.perf_counter() - t)
            assert np.array_equal(a, b)
            del b
            path = os.path.join(d, f"hither-bench-{os.getpid()}.npy")
            t = time.perf_counter()
            np.save(path, a)
            c = np.load(path)
            float(c[::4096].sum())
            t_nps.append(time.perf_counter() - t)
            os.unlink(path)
            del c
    jh.shutdown()
    return [row_median(f"{size_mb} MB array into and out of a parallel worker", t_his, "s",
                       "np.save + np.load on /dev/shm", t_nps, "<= 1.5x")]


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--only", choices=["noops", "array"], help="run one benchmark")
    args = p.parse_args(argv)
    if args.only == "noops":
        return bench_many_noops(200 if args.quick else 2000)
    if args.only == "array":
        return bench_big_array(20 if args.quick else 200)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, numpy {np.__version__}")
    rows = []
    rows += bench_default_overhead(2000 if args.quick else 20000)
    rows += bench_many_noops(200 if args.quick else 2000)
    rows += bench_faq_parallel()
    rows += bench_hash(64 if args.quick else 1024)
    rows += bench_big_array(20 if args.quick else 200)
    hi.reset()
    return rows


if __name__ == "__main__":
    main()

"""hither-cache benchmarks: the hit path of the file job cache, beside baselines measured
in the same run.

    python benchmarks/bench_cache.py               # 1 GB array figure
    python benchmarks/bench_cache.py --size-mb 64  # a quick run (also: --quick)

1. 1,000 cache hits of a small job through ``f.run(...).wait()`` with
   ``hi.JobCache(path=...)`` vs ``joblib.Memory`` hits of the same function and arguments.
   Target: at least as fast.
2. A hit for a job with a large float64 array argument vs hashing alone
   (``hither.values.grammar.job_hash``): a hit must cost little beyond the hash it cannot avoid.
   Target: at most 1.2x.

Each figure is the best of ``--repeat`` runs, alternating ours and the baseline. Scratch
files go to benchmarks/_scratch/ (gitignored) and are removed at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from typing import Callable, List

import numpy as np

import hither as hi
from hither.values.grammar import job_hash

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, "_scratch")


@hi.function("bench_cache_small", "0.1.0")
def bench_cache_small(x: int, y: float) -> dict:
    return {"sum": x + y, "pair": (x, y)}


@hi.function("bench_cache_big", "0.1.0")
def bench_cache_big(a: np.ndarray) -> float:
    return float(a[:1000].sum())


def _line(figure: str, ours: float, base: float, baseline: str, target: str) -> None:
    print(f"{figure}: {ours:.4g} s | baseline {baseline}: {base:.4g} s | "
          f"ratio {ours / base:.2f}x | target {target}", flush=True)


def _best_of(repeat: int, ours: Callable[[], None], base: Callable[[], None]) -> tuple:
    t_ours: List[float] = []
    t_base: List[float] = []
    for _ in range(repeat):
        for fn, runs in ((ours, t_ours), (base, t_base)):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
    return min(t_ours), min(t_base)


def bench_small_hits(work: str, n: int, repeat: int) -> None:
    import joblib

    jc = hi.JobCache(path=os.path.join(work, "jc-small"))
    mem = joblib.Memory(location=os.path.join(work, "joblib"), verbose=0)
    cached = mem.cache(bench_cache_small.raw)
    args = [(i, 0.5) for i in range(n)]
    with hi.Config(job_cache=jc):  # fill both caches
        for x, y in args:
            bench_cache_small.run(x=x, y=y).wait()
    for x, y in args:
        cached(x=x, y=y)

    def ours() -> None:
        with hi.Config(job_cache=jc):
            for x, y in args:
                job = bench_cache_small.run(x=x, y=y)
                assert job.wait()["sum"] == x + y
        assert job.get_runtime_info().cached

    def base() -> None:
        for x, y in args:
            assert cached(x=x, y=y)["sum"] == x + y

    t_ours, t_base = _best_of(repeat, ours, base)
    _line(f"{n} cache hits of a small job, f.run(...).wait() with hi.JobCache(path=...)",
          t_ours, t_base, f"joblib.Memory hits of the same calls ({joblib.__version__})",
          "<= 1.0x (at least as fast)")


def bench_big_hit(work: str, size_mb: int, repeat: int) -> None:
    a = np.random.default_rng(0).random(size_mb * 1024 * 1024 // 8)
    jc = hi.JobCache(path=os.path.join(work, "jc-big"))
    with hi.Config(job_cache=jc):
        expected = bench_cache_big.run(a=a).wait()  # runs once and stores the entry

    def ours() -> None:
        with hi.Config(job_cache=jc):
            job = bench_cache_big.run(a=a)
            assert job.wait() == expected and job.get_runtime_info().cached

    def base() -> None:
        job_hash("bench_cache_big", "0.1.0", {"a": a})

    t_ours, t_base = _best_of(repeat, ours, base)
    _line(f"cache hit of a job with a {size_mb} MB float64 argument", t_ours, t_base,
          "job_hash of the same arguments alone", "<= 1.2x")


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024, help="size of the array argument (MB)")
    p.add_argument("--hits", type=int, default=1000, help="number of small cache hits")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (best is shown)")
    p.add_argument("--quick", action="store_true", help="small sizes (64 MB, 2 runs)")
    args = p.parse_args(argv)
    if args.quick:
        args.size_mb, args.repeat = min(args.size_mb, 64), min(args.repeat, 2)
    work = os.path.join(SCRATCH, f"cache-{uuid.uuid4().hex[:8]}")
    os.makedirs(work)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, numpy {np.__version__}",
          flush=True)
    try:
        bench_small_hits(work, args.hits, args.repeat)
        bench_big_hit(work, args.size_mb, args.repeat)
    finally:
        hi.reset()
        shutil.rmtree(work, ignore_errors=True)
        try:
            os.rmdir(SCRATCH)  # only if empty: other benchmarks may be using it
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

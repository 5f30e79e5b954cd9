"""hither-container benchmarks: per-job overhead of container jobs against `docker run`,
and warm containers against one container per job, medians of interleaved runs.

    python benchmarks/bench_container.py [--quick] [--jobs N] [--rounds R] [--hardened-baseline]

``--hardened-baseline`` adds a second, separately labelled baseline: the same ``docker run
--rm python3 -c pass`` with the hardening flags hither's containers get by default, to split
what the hardening costs from what hither adds. The target stays against the bare baseline.

Needs the Docker Engine and the test image (bash scripts/services.sh docker).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import sys
import time

import hither as hi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_funcs import noop  # noqa: E402  (importable by workers; shipped as the code bundle)

IMAGE = os.environ.get("HITHER_TEST_IMAGE", "hither-test/python-numpy:3.11")


def docker_run_pass(c, n: int, workers: int, flags=None) -> float:
    """Seconds per container of `docker run --rm IMAGE python3 -c pass`, `workers` at a time
    (through the Engine API, as the runner talks to it); ``flags``: more run() arguments."""
    def one(_):
        c.containers.run(IMAGE, ["python3", "-c", "pass"], remove=True, network_mode="none", **(flags or {}))

    t = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, range(n)))
    return (time.perf_counter() - t) / n


def hither_jobs(jh, n: int, reuse: bool, offset: int) -> float:
    """Seconds per trivial container job through ``jh`` (distinct arguments: no cache hit)."""
    cfg = hi.Config(job_handler=jh, container="docker://" + IMAGE,
                    container_options={"reuse": reuse})
    t = time.perf_counter()
    with cfg:
        jobs = [noop.run(x=offset + i) for i in range(n)]
    out = [j.wait(600) for j in jobs]
    dt = time.perf_counter() - t
    assert out == [offset + i for i in range(n)]
    return dt / n


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, help="jobs per round (default 50, 10 with --quick)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5, 3 with --quick)")
    ap.add_argument("--hardened-baseline", action="store_true",
                    help="also time docker run --rm with hither's default hardening flags")
    args = ap.parse_args()
    n, rounds = (10, 3) if args.quick else (50, 5)
    n, rounds = args.jobs or n, args.rounds or rounds
    from hither.models import ContainerOptions
    from hither_container.docker_runner import client
    from hither_container.engine import hardening

    c = client()
    flags = hardening(ContainerOptions())
    flags.pop("environment", None)  # HOME=/tmp: nothing for `python3 -c pass`
    jh = hi.ParallelJobHandler(2)
    hither_jobs(jh, 2, True, -10)  # first warm containers and imports outside the timing
    base, cold, warm, hard = [], [], [], []
    for r in range(rounds):  # interleaved: the machine's load hits all alike
        base.append(docker_run_pass(c, n, 2))
        if args.hardened_baseline:
            hard.append(docker_run_pass(c, n, 2, flags))
        cold.append(hither_jobs(jh, n, False, 1000 * r))
        warm.append(hither_jobs(jh, n, True, 1000 * r + 500))
    jh.shutdown()
    hi.reset()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f} at the end, "
          f"{n} jobs x {rounds} rounds, ParallelJobHandler(2)")
    (bm, blo, bhi), (cm, clo, chi), (wm, wlo, whi) = summary(base), summary(cold), summary(warm)
    print(f"container job, one container per job: {cm * 1e3:.0f} ms/job ({clo * 1e3:.0f}-{chi * 1e3:.0f}) "
          f"| baseline docker run --rm python3 -c pass, 2 at a time: {bm * 1e3:.0f} ms ({blo * 1e3:.0f}-{bhi * 1e3:.0f}) "
          f"| ratio {cm / bm:.2f}x | target <= 1.3x")
    if hard:
        hm, hlo, hhi = summary(hard)
        print(f"second baseline, docker run --rm python3 -c pass WITH hither's hardening flags "
              f"({', '.join(sorted(flags))}), 2 at a time: {hm * 1e3:.0f} ms ({hlo * 1e3:.0f}-{hhi * 1e3:.0f}) "
              f"| hardened/bare {hm / bm:.2f}x | container job/hardened {cm / hm:.2f}x (not the target)")
    print(f"container job, warm container (reuse=True): {wm * 1e3:.1f} ms/job ({wlo * 1e3:.1f}-{whi * 1e3:.1f}) "
          f"| baseline one container per job: {cm * 1e3:.0f} ms | ratio {cm / wm:.1f}x lower "
          f"| target >= 5x lower and under 50 ms")


if __name__ == "__main__":
    main()

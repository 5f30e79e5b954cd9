"""hither-slurm benchmarks on the real single-node Slurm of ``scripts/services.sh slurm``.

    python benchmarks/bench_slurm.py            # 20 jobs per run, 5 runs
    python benchmarks/bench_slurm.py --quick    # 10 jobs per run, 3 runs (a smoke run)

1. N trivial jobs through a new ``SlurmJobHandler`` (pilot batches of 2 workers, batch start
   included) beside submitit (the standard Slurm submitter) with one ``sbatch`` per job, and
   beside submitit's ``map_array`` (one job array). Target: at least 20x faster than both.
2. Pilot overhead per job once a batch is running: 200 trivial jobs into a warm batch,
   wall time per job, beside ``python -m hither.runtime JOB_DIR`` per job. Target: < 20 ms.
3. A two-job pipeline passing a 50 MB array on a warm batch: the result stays in the
   working folder's store and goes to the second job by reference, beside the same pipeline
   with ``hi.Config(download_results=True)`` (through the client, as before results stayed
   on the cluster); wall time and the bytes the client process read (/proc/self/io rchar).

    python benchmarks/bench_slurm.py --figures 2,3   # without the slow submitit comparison

Runs are interleaved (ours, baselines, ours, ...); each figure is the median with the spread
(min-max). submitit is a benchmark-only dependency (``pip install submitit``); without it,
figure 1 compares with plain ``sbatch --wrap`` per job. Scratch folders go to /tmp.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hither as hi  # noqa: E402
from bench_funcs import bench_ramp, bench_sum, noop  # noqa: E402  (importable by the pilots' job processes)


def plain_add(x: int, y: int) -> int:
    return x + y


def ours(n: int) -> float:
    work = tempfile.mkdtemp(prefix="hither-bench-slurm-")
    jh = hi.SlurmJobHandler(working_dir=work, num_workers_per_batch=2, num_cores_per_job=1,
                            idle_timeout=10)
    try:
        t0 = time.perf_counter()
        with hi.Config(job_handler=jh):
            jobs = [noop.run(x=i) for i in range(n)]
        assert [j.wait(600) for j in jobs] == list(range(n))
        return time.perf_counter() - t0
    finally:
        jh.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def submitit_each(n: int, array: bool) -> float:
    import submitit

    folder = tempfile.mkdtemp(prefix="hither-bench-submitit-")
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(slurm_partition="debug", cpus_per_task=1, timeout_min=10)
        t0 = time.perf_counter()
        if array:
            jobs = ex.map_array(plain_add, list(range(n)), [0] * n)
        else:
            jobs = [ex.submit(plain_add, i, 0) for i in range(n)]
        assert [j.result() for j in jobs] == list(range(n))
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sbatch_each(n: int) -> float:
    folder = tempfile.mkdtemp(prefix="hither-bench-sbatch-")
    try:
        t0 = time.perf_counter()
        ids = []
        for i in range(n):
            out = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", f"--output={folder}/{i}.out",
                                  "--wrap", f"echo {i}"], capture_output=True, text=True, check=True)
            ids.append(out.stdout.strip())
        while True:
            q = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True,
                               text=True).stdout.split()
            if not set(q) & set(ids):
                break
            time.sleep(0.5)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def warm(jobs: int) -> Callable[[], float]:
    work = tempfile.mkdtemp(prefix="hither-bench-slurm-warm-")
    jh = hi.SlurmJobHandler(working_dir=work, num_workers_per_batch=2, num_cores_per_job=1,
                            idle_timeout=120)
    with hi.Config(job_handler=jh):
        noop.run(x=0).wait(600)  # the batch is up

    def run() -> float:
        t0 = time.perf_counter()
        with hi.Config(job_handler=jh):
            js = [noop.run(x=i) for i in range(jobs)]
        for j in js:
            j.wait(600)
        return (time.perf_counter() - t0) / jobs

    run.handler = jh  # type: ignore[attr-defined]
    run.work = work  # type: ignore[attr-defined]
    return run


def runner_per_job(jobs: int) -> Callable[[], float]:
    """``python -m hither.runtime JOB_DIR`` on a job directory of the same job, one per job."""
    from hither.outside.jobdir import write_job_dir

    captured: Dict[str, str] = {}
    d = tempfile.mkdtemp(prefix="hither-bench-runner-")

    class Capture(hi.DefaultJobHandler):
        def submit(self, job, inline):  # type: ignore[no-untyped-def]
            write_job_dir(job, d)
            captured["dir"] = d
            job.report_result(None)

    with hi.Config(job_handler=Capture()):
        noop.run(x=1).wait()

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(jobs):
            subprocess.run([sys.executable, "-m", "hither.runtime", d], check=True, cwd=d)
        return (time.perf_counter() - t0) / jobs

    return run


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(x for x in f if x.startswith("rchar:")).split()[1])


def pipeline(jh: "hi.SlurmJobHandler", n: int, download: bool, seed: int) -> "tuple[float, int]":
    """(seconds, bytes read by this process) of ramp(n) -> sum on ``jh``."""
    r0, t0 = _rchar(), time.perf_counter()
    with hi.Config(job_handler=jh, download_results=download):
        total = bench_sum.run(a=bench_ramp.run(n=n, seed=seed)).wait(600)
    took, read = time.perf_counter() - t0, _rchar() - r0
    assert total == n * (n - 1) / 2 + n * seed, total
    return took, read


def line(figure: str, a: List[float], b: List[float], baseline: str, target: str, unit: str = "s",
         scale: float = 1.0) -> None:
    ma, mb = statistics.median(a), statistics.median(b)
    fmt = (lambda v: f"{v * scale:.3g} {unit}")
    print(f"{figure}: {fmt(ma)} (spread {fmt(min(a))}-{fmt(max(a))}) | baseline {baseline}: {fmt(mb)} "
          f"(spread {fmt(min(b))}-{fmt(max(b))}) | ratio {ma / mb:.3f} | target {target}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warm-jobs", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--figures", default="1,2,3", help="which figures to measure, e.g. 2,3")
    a = ap.parse_args()
    figures = {int(f) for f in a.figures.split(",")}
    if a.quick:
        a.jobs, a.repeat, a.warm_jobs = 10, 3, 50
    from hither_slurm.batches import slurm_available

    why = slurm_available()
    if why:
        print(f"skipped: no Slurm here ({why}); bash scripts/services.sh slurm")
        return
    try:
        import submitit  # noqa: F401

        # without Slurm accounting, submitit warns at every poll that sacct fails; results are right
        logging.getLogger("submitit").setLevel(logging.ERROR)
        have_submitit = True
    except ImportError:
        have_submitit = False
    print(f"machine: {os.cpu_count()} cores, python {platform.python_version()}, Slurm "
          f"{subprocess.run(['sinfo', '--version'], capture_output=True, text=True).stdout.strip()}",
          flush=True)
    t_ours: List[float] = []
    base: Dict[str, List[float]] = {}
    for _ in range(a.repeat if 1 in figures else 0):
        t_ours.append(ours(a.jobs))
        if have_submitit:
            base.setdefault("submitit, one sbatch per job", []).append(submitit_each(a.jobs, False))
            base.setdefault("submitit map_array (one job array)", []).append(submitit_each(a.jobs, True))
        else:
            base.setdefault("sbatch --wrap per job", []).append(sbatch_each(a.jobs))
    for name, times in base.items():
        line(f"{a.jobs} trivial jobs through SlurmJobHandler (2 workers per batch, batch start included)",
             t_ours, times, name, "ratio <= 0.05 (20x faster)")

    if 2 in figures:
        figure_2(a)
    if 3 in figures:
        figure_3(a)


def figure_3(a: argparse.Namespace) -> None:
    n = 6_250_000  # 50 MB
    w = warm(1)
    jh = w.handler  # type: ignore[attr-defined]
    try:
        ref: List[float] = []
        down: List[float] = []
        read = {"ref": [], "down": []}  # type: Dict[str, List[float]]
        for i in range(a.repeat):
            t, b = pipeline(jh, n, False, 2 * i + 1)
            ref.append(t)
            read["ref"].append(b)
            t, b = pipeline(jh, n, True, 2 * i + 2)
            down.append(t)
            read["down"].append(b)
    finally:
        jh.shutdown()
        shutil.rmtree(w.work, ignore_errors=True)  # type: ignore[attr-defined]
    line("2-job pipeline passing 50 MB on a warm batch, by reference", ref, down,
         "download_results=True (through the client)", "ratio < 1")
    line("bytes the client read in that pipeline, by reference", read["ref"], read["down"],
         "download_results=True", "far below 50 MB", unit="MB", scale=1e-6)


def figure_2(a: argparse.Namespace) -> None:
    w, r = warm(a.warm_jobs), runner_per_job(a.warm_jobs)
    try:
        tw, tr = [], []
        for _ in range(a.repeat):
            tw.append(w())
            tr.append(r())
    finally:
        w.handler.shutdown()  # type: ignore[attr-defined]
        shutil.rmtree(w.work, ignore_errors=True)  # type: ignore[attr-defined]
    line(f"{a.warm_jobs} trivial jobs into a running batch (2 workers), per job", tw, tr,
         "python -m hither.runtime JOB_DIR per job", "< 20 ms per job", unit="ms", scale=1e3)


if __name__ == "__main__":
    main()

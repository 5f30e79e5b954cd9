"""Benchmarks of hither-store's local store against plain numpy / hashlib on the same disk.

    python benchmarks/bench_store.py              # 1 GB figures (needs ~3 GB free disk)
    python benchmarks/bench_store.py --size-mb 64 # a quick run

Prints one line per figure: the figure, its baseline measured in the same run, the ratio
and the target. Each measurement is the best of ``--repeat`` runs, alternating ours and the
baseline so that neither always meets a disk still busy writing back the other's data.
Scratch files go to benchmarks/_scratch/ (gitignored) and are removed at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
import uuid
from typing import Callable, List

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, "_scratch")


def _best(fn: Callable[[], None], runs: List[float]) -> None:
    if hasattr(os, "sync"):
        os.sync()  # start each run with no dirty pages left by the previous one
    t0 = time.perf_counter()
    fn()
    runs.append(time.perf_counter() - t0)


def _line(figure: str, ours: float, base: float, baseline: str, target: str) -> None:
    print(f"{figure}: {ours:.3f} s | baseline {baseline}: {base:.3f} s | "
          f"ratio {ours / base:.2f}x | target {target}", flush=True)


def bench_array(work: str, size_mb: int, repeat: int) -> None:
    """put_array + load_array(mmap) + sum vs np.save + np.load + sum."""
    import numpy as np

    from hither_store import Store

    arr = np.random.default_rng(0).random(size_mb * 1024 * 1024 // 8)
    ours: List[float] = []
    base: List[float] = []
    for i in range(repeat):
        store_dir = os.path.join(work, f"store-a{i}")
        npy = os.path.join(work, f"plain{i}.npy")

        def run_ours(store_dir: str = store_dir) -> None:
            store = Store(store_dir)
            uri = store.put_array(arr)
            float(store.load_array(uri, mmap=True).sum())  # touch every byte of the mmap

        def run_base(npy: str = npy) -> None:
            np.save(npy, arr)
            float(np.load(npy).sum())

        _best(run_ours, ours)
        _best(run_base, base)
        shutil.rmtree(store_dir, ignore_errors=True)
        os.remove(npy)
    _line(f"put_array+load_array(mmap)+sum of a {size_mb} MB float64 array", min(ours), min(base),
          "np.save+np.load+sum", "<= 1.25x")
    # the floor of any content-addressed put: sha1 of the bytes, which the baseline never does
    floor: List[float] = []
    for _ in range(repeat):
        _best(lambda: hashlib.sha1(memoryview(arr).cast("B")).hexdigest(), floor)
    _line("  (reference) sha1 alone of the array's bytes", min(floor), min(base),
          "np.save+np.load+sum", "information")


def bench_hash(work: str, size_mb: int, repeat: int) -> None:
    """Throughput of put_file (hash + copy into the store) vs hashlib.sha1 reading the file."""
    from hither_store import Store

    src = os.path.join(work, "source.bin")
    block = os.urandom(8 * 1024 * 1024)
    with open(src, "wb") as f:
        for _ in range(max(1, size_mb // 8)):
            f.write(block)
    nbytes = os.path.getsize(src)
    ours: List[float] = []
    base: List[float] = []
    expected = ""
    for i in range(repeat):
        store_dir = os.path.join(work, f"store-h{i}")
        # a fresh path each run: the put must read the file, not reuse hither's sha1 memo
        path = os.path.join(work, f"source-{i}.bin")
        os.link(src, path)

        def run_ours(store_dir: str = store_dir, path: str = path) -> None:
            Store(store_dir).put_file(path)

        def run_base() -> None:
            nonlocal expected
            h = hashlib.sha1()
            with open(src, "rb", buffering=0) as f:
                buf = bytearray(8 * 1024 * 1024)
                view = memoryview(buf)
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(view[:n])
            expected = h.hexdigest()

        _best(run_base, base)
        _best(run_ours, ours)
        shutil.rmtree(store_dir, ignore_errors=True)
        os.remove(path)
    mb = nbytes / 1e6
    ours_tp, base_tp = mb / min(ours), mb / min(base)
    print(f"put_file throughput (hash + copy into a new local store) of a {size_mb} MB file: "
          f"{ours_tp:.0f} MB/s | baseline hashlib.sha1 reading it: {base_tp:.0f} MB/s | "
          f"ratio {ours_tp / base_tp:.2f}x | target >= 0.8x", flush=True)

    # the same content put again from another path (no sha1 memo): one pass, nothing kept
    store_dir = os.path.join(work, "store-again")
    store = Store(store_dir)
    store.put_file(src)
    again: List[float] = []
    for i in range(repeat):
        path = os.path.join(work, f"again-{i}.bin")
        os.link(src, path)
        _best(lambda path=path: store.put_file(path), again)
        os.remove(path)
    again_tp = mb / min(again)
    print(f"put_file throughput, content already stored, unknown path: {again_tp:.0f} MB/s | "
          f"baseline hashlib.sha1 reading it: {base_tp:.0f} MB/s | ratio {again_tp / base_tp:.2f}x | "
          f"target >= 0.8x", flush=True)
    t0 = time.perf_counter()
    store.put_file(src)
    memo = time.perf_counter() - t0
    print(f"put_file of a path already put (sha1 memo hit): {memo * 1000:.1f} ms | "
          f"baseline hashlib.sha1 reading it: {min(base):.3f} s | ratio {memo / min(base):.4f}x | "
          f"target: no read", flush=True)


def _warm_up(work: str) -> None:
    """Pay one-time import and first-call costs outside the timed runs."""
    import numpy as np

    from hither_store import Store

    store = Store(os.path.join(work, "warm-up"))
    store.load_array(store.put_array(np.zeros(10))).sum()
    np.save(os.path.join(work, "warm-up.npy"), np.zeros(10))
    np.load(os.path.join(work, "warm-up.npy")).sum()
    shutil.rmtree(os.path.join(work, "warm-up"))


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="array and file size (default 1024)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (best is kept)")
    parser.add_argument("--only", choices=["array", "hash"], default=None)
    args = parser.parse_args(argv)
    work = os.path.join(SCRATCH, f"bench-store-{uuid.uuid4().hex[:8]}")
    os.makedirs(work)
    try:
        _warm_up(work)
        if args.only in (None, "array"):
            bench_array(work, args.size_mb, args.repeat)
        if args.only in (None, "hash"):
            bench_hash(work, args.size_mb, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

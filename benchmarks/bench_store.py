"""Benchmarks of hither-store's local store against plain numpy / hashlib on the same disk.

    python benchmarks/bench_store.py              # 1 GB figures (needs ~3 GB free disk)
    python benchmarks/bench_store.py --quick      # 64 MB figures, for a quick look

Prints one line per figure: the median of ``--repeat`` (at least 5) runs of ours and of the
baseline, run alternately (ours, baseline, ours, ...) so that neither always meets a disk
still busy writing back the other's data, with the spread (min-max) of each, and the
ratio of the medians with the spread of the per-pair ratios. Scratch files go to
benchmarks/_scratch/ (gitignored) and are removed at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import time
import uuid
from typing import Callable, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, "_scratch")


def _timed(fn: Callable[[], None]) -> float:
    if hasattr(os, "sync"):
        os.sync()  # start each run with no dirty pages left by the previous one
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _pairs(ours: Callable[[int], None], base: Callable[[int], None], repeat: int,
           cleanup: Optional[Callable[[int], None]] = None):
    """Interleaved runs: ours(i), base(i) for i in range(repeat); returns both lists."""
    a: List[float] = []
    b: List[float] = []
    for i in range(repeat):
        a.append(_timed(lambda: ours(i)))
        b.append(_timed(lambda: base(i)))
        if cleanup is not None:
            cleanup(i)
    return a, b


def _spread(xs: List[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    med = statistics.median(xs) * scale
    return f"{fmt.format(med)} ({fmt.format(min(xs) * scale)}-{fmt.format(max(xs) * scale)})"


def _line(figure: str, ours: List[float], base: List[float], baseline: str, target: str) -> None:
    ratios = [o / b for o, b in zip(ours, base)]
    print(f"{figure}: {_spread(ours)} s | baseline {baseline}: {_spread(base)} s | ratio "
          f"{statistics.median(ours) / statistics.median(base):.2f}x (per pair "
          f"{min(ratios):.2f}-{max(ratios):.2f}) | target {target} | median (min-max) of "
          f"{len(ours)} runs", flush=True)


def _throughput_line(figure: str, nbytes: int, ours: List[float], base: List[float],
                     baseline: str, target: str) -> None:
    mb = nbytes / 1e6
    tp_o = [mb / t for t in ours]
    tp_b = [mb / t for t in base]
    ratios = [o / b for o, b in zip(tp_o, tp_b)]
    print(f"{figure}: {_spread(tp_o, fmt='{:.0f}')} MB/s | baseline {baseline}: "
          f"{_spread(tp_b, fmt='{:.0f}')} MB/s | ratio {statistics.median(tp_o) / statistics.median(tp_b):.2f}x "
          f"(per pair {min(ratios):.2f}-{max(ratios):.2f}) | target {target} | median (min-max) "
          f"of {len(ours)} runs", flush=True)


def _forget_checks() -> None:
    """As in a fresh process: no blob checked yet (a no-op for versions without the check)."""
    try:
        from hither_store import localdir
    except ImportError:  # pragma: no cover
        return
    verified = getattr(localdir, "_verified", None)
    if verified is not None:
        verified.clear()


def bench_array(work: str, size_mb: int, repeat: int) -> None:
    """put_array + load_array(mmap) + sum vs np.save + np.load + sum."""
    import numpy as np

    from hither_store import Store

    arr = np.random.default_rng(0).random(size_mb * 1024 * 1024 // 8)

    def store_dir(i: int) -> str:
        return os.path.join(work, f"store-a{i}")

    def npy(i: int) -> str:
        return os.path.join(work, f"plain{i}.npy")

    def ours(i: int) -> None:
        store = Store(store_dir(i))
        uri = store.put_array(arr)
        float(store.load_array(uri, mmap=True).sum())  # touch every byte of the mmap

    def base(i: int) -> None:
        np.save(npy(i), arr)
        float(np.load(npy(i)).sum())

    def cleanup(i: int) -> None:
        shutil.rmtree(store_dir(i), ignore_errors=True)
        os.remove(npy(i))

    o, b = _pairs(ours, base, repeat, cleanup)
    _line(f"put_array+load_array(mmap)+sum of a {size_mb} MB float64 array", o, b,
          "np.save+np.load+sum", "<= 1.25x")

    # load alone of a blob this process has not read yet (its first read re-hashes it)
    store = Store(os.path.join(work, "store-load"))
    uri = store.put_array(arr)
    np.save(npy(0), arr)

    def load_first(_i: int) -> None:
        _forget_checks()
        float(store.load_array(uri, mmap=True).sum())

    def load_base(_i: int) -> None:
        float(np.load(npy(0)).sum())

    o, b = _pairs(load_first, load_base, repeat)
    _line(f"  load_array(mmap)+sum, first read of the blob in this process (re-hash) of {size_mb} MB",
          o, b, "np.load+sum", "information (the integrity check's cost)")

    def load_again(_i: int) -> None:
        float(store.load_array(uri, mmap=True).sum())

    o, b = _pairs(load_again, load_base, repeat)
    _line(f"  load_array(mmap)+sum, blob already checked by this process, {size_mb} MB", o, b,
          "np.load+sum", "information (zero-copy path)")
    os.remove(npy(0))
    shutil.rmtree(store.url, ignore_errors=True)

    # the floor of any content-addressed put: sha1 of the bytes, which the baseline never does
    view = memoryview(arr).cast("B")
    o, b = _pairs(lambda _i: hashlib.sha1(view).hexdigest() and None,
                  lambda i: (np.save(npy(i), arr), float(np.load(npy(i)).sum())) and None,
                  repeat, lambda i: os.remove(npy(i)))
    _line("  (reference) sha1 alone of the array's bytes", o, b, "np.save+np.load+sum", "information")


def _sha1_file(path: str) -> str:
    h = hashlib.sha1()
    buf = bytearray(8 * 1024 * 1024)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return h.hexdigest()
            h.update(view[:n])


def bench_hash(work: str, size_mb: int, repeat: int) -> None:
    """Throughput of put_file (hash + copy into the store) vs hashlib.sha1 reading the file."""
    from hither_store import Store

    src = os.path.join(work, "source.bin")
    block = os.urandom(8 * 1024 * 1024)
    with open(src, "wb") as f:
        for _ in range(max(1, size_mb // 8)):
            f.write(block)
    nbytes = os.path.getsize(src)

    def store_dir(i: int) -> str:
        return os.path.join(work, f"store-h{i}")

    def link(i: int, tag: str) -> str:
        # a fresh path each run: the put must read the file, not reuse hither's sha1 memo
        path = os.path.join(work, f"{tag}-{i}.bin")
        os.link(src, path)
        return path

    def put_new(i: int) -> None:
        Store(store_dir(i)).put_file(link(i, "new"))

    def cleanup(i: int) -> None:
        shutil.rmtree(store_dir(i), ignore_errors=True)
        os.remove(os.path.join(work, f"new-{i}.bin"))

    o, b = _pairs(put_new, lambda _i: _sha1_file(src) and None, repeat, cleanup)
    _throughput_line(f"put_file throughput (hash + copy into a new local store) of a {size_mb} MB file",
                     nbytes, o, b, "hashlib.sha1 reading it", ">= 0.8x")

    # the same content put again from another file (a copy: another inode, no sha1 memo)
    store = Store(os.path.join(work, "store-again"))
    store.put_file(src)
    copies = []
    for i in range(repeat):
        copies.append(os.path.join(work, f"copy-{i}.bin"))
        shutil.copyfile(src, copies[-1])
    o, b = _pairs(lambda i: store.put_file(copies[i]) and None, lambda i: _sha1_file(copies[i]) and None,
                  repeat, lambda i: os.remove(copies[i]))
    _throughput_line("put_file throughput, content already stored, from a copy (unknown path and inode)",
                     nbytes, o, b, "hashlib.sha1 reading it", ">= 0.8x")

    # a hard link (or rename) of a file this process stored: the same inode, unchanged
    o, b = _pairs(lambda i: store.put_file(link(i, "again")) and None, lambda _i: _sha1_file(src) and None,
                  repeat, lambda i: os.remove(os.path.join(work, f"again-{i}.bin")))
    _line("put_file, content already stored, hard link of a file this process put", o, b,
          "hashlib.sha1 reading it", "no read")

    o, b = _pairs(lambda _i: store.put_file(src) and None, lambda _i: _sha1_file(src) and None, repeat)
    _line("put_file of a path already put (sha1 memo hit)", o, b, "hashlib.sha1 reading it",
          "no read")


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=None,
                        help="array and file size (default 1024, with --quick 64)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs per figure (>= 5)")
    parser.add_argument("--quick", action="store_true", help="64 MB instead of 1 GB")
    parser.add_argument("--only", choices=["array", "hash"], default=None)
    args = parser.parse_args(argv)
    if args.repeat < 5:
        parser.error("--repeat must be at least 5: figures are medians of at least 5 runs")
    size_mb = args.size_mb or (64 if args.quick else 1024)
    import hither_store
    import numpy as np

    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"hither_store from {os.path.dirname(hither_store.__file__)}, load average "
          f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "", flush=True)
    work = os.path.join(SCRATCH, f"bench-store-{uuid.uuid4().hex[:8]}")
    os.makedirs(work)
    try:
        _warm_up(work)
        if args.only in (None, "array"):
            bench_array(work, size_mb, args.repeat)
        if args.only in (None, "hash"):
            bench_hash(work, size_mb, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

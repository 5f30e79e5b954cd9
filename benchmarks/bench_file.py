"""Benchmark of making a ``hi.File`` (hash + keep a copy in the store) against the plain
way to do the same by hand: ``hashlib.sha1`` of the file plus ``shutil.copyfile`` of it.

    python benchmarks/bench_file.py            # a 1 GB file, 5 interleaved runs (~3 GB free disk)
    python benchmarks/bench_file.py --quick    # a 64 MB file
    python benchmarks/bench_file.py --dir /dev/shm   # in memory: no disk writeback noise

Prints one line per figure: the median of each side over the interleaved runs, the ratio of
the medians and the spread of the per-run ratios (min-max), and the target. Each run uses a
fresh store folder and a fresh path (so nothing is known in advance), alternates which side
goes first, and starts with no dirty pages (``os.sync``). Scratch files go to
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
from typing import Callable, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, "_scratch")
CHUNK = 8 * 1024 * 1024


def _timed(fn: Callable[[], None]) -> float:
    if hasattr(os, "sync"):
        os.sync()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _sha1_then_copy(src: str, dest: str) -> str:
    h = hashlib.sha1()
    with open(src, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    shutil.copyfile(src, dest)
    return h.hexdigest()


def _can_clone(work: str) -> bool:
    from hither.content.folder import clone_fd

    a, b = os.path.join(work, "clone-a"), os.path.join(work, "clone-b")
    with open(a, "wb") as f:
        f.write(b"x" * 4096)
    with open(a, "rb") as fa, open(b, "wb") as fb:
        ok = clone_fd(fa.fileno(), fb.fileno())
    os.remove(a)
    os.remove(b)
    return ok


def _report(figure: str, pairs: List[Tuple[float, float]], baseline: str, target: str) -> float:
    ours = statistics.median(p[0] for p in pairs)
    base = statistics.median(p[1] for p in pairs)
    ratios = [o / b for o, b in pairs]
    print(f"{figure}: {ours:.3f} s | baseline {baseline}: {base:.3f} s | ratio {ours / base:.2f}x "
          f"(per-run {min(ratios):.2f}-{max(ratios):.2f}x, median of {len(pairs)}) | target {target}",
          flush=True)
    return ours / base


def bench_make_file(work: str, size_mb: int, runs: int) -> None:
    import hither as hi
    from hither.content.folder import ContentFolder, file_store
    from hither.content.stores import set_default_store

    src = os.path.join(work, "source.bin")
    block = os.urandom(CHUNK)
    with open(src, "wb") as f:
        for _ in range(max(1, size_mb * 1024 * 1024 // CHUNK)):
            f.write(block)
    expected = ""
    pairs: List[Tuple[float, float]] = []
    builtin_pairs: List[Tuple[float, float]] = []
    kind = ""
    for i in range(runs):
        store_dir = os.path.join(work, f"store-{i}")
        folder_dir = os.path.join(work, f"folder-{i}")
        path = os.path.join(work, f"source-{i}.bin")
        path2 = os.path.join(work, f"source-{i}-b.bin")
        os.link(src, path)  # paths hither has never seen: no sha1 memo
        os.link(src, path2)
        copy = os.path.join(work, f"copy-{i}.bin")
        os.environ["HITHER_STORE_URL"] = store_dir
        set_default_store(None)
        kind = type(file_store()).__module__.split(".")[0]  # opened once per process, untimed
        folder = ContentFolder(folder_dir)
        made: List[str] = []

        def ours() -> None:
            made.append(hi.File(path).sha1)

        def builtin() -> None:  # hither-core's own content folder (no hither-store)
            made.append(folder.put_file(path2)[7:47])

        def base() -> None:
            nonlocal expected
            expected = _sha1_then_copy(src, copy)

        steps = [("ours", ours), ("builtin", builtin), ("base", base)]
        order = steps[i % 3:] + steps[:i % 3]  # each side goes first in turn
        t = {name: _timed(fn) for name, fn in order}
        assert made and all(m == expected for m in made), "hi.File and hashlib disagree"
        pairs.append((t["ours"], t["base"]))
        builtin_pairs.append((t["builtin"], t["base"]))
        shutil.rmtree(store_dir, ignore_errors=True)
        shutil.rmtree(folder_dir, ignore_errors=True)
        for p in (copy, path, path2):
            os.remove(p)
    clone = "clones" if _can_clone(work) else "cannot clone: all copy"
    _report(f"hi.File(path) of a new {size_mb} MB file, store of {kind} (file system {clone})", pairs,
            "hashlib.sha1 + shutil.copyfile", "<= 1.1x")
    _report("  hither-core's built-in content folder, same file", builtin_pairs,
            "hashlib.sha1 + shutil.copyfile", "<= 1.1x")


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 64 MB file instead of 1 GB")
    parser.add_argument("--size-mb", type=int, default=None, help="file size (default 1024)")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (default 5)")
    parser.add_argument("--dir", default=SCRATCH,
                        help="scratch folder (default benchmarks/_scratch; /dev/shm leaves the disk out)")
    args = parser.parse_args(argv)
    size_mb = args.size_mb or (64 if args.quick else 1024)
    work = os.path.join(args.dir, f"bench-file-{uuid.uuid4().hex[:8]}")
    os.makedirs(work)
    try:
        import hither as hi

        warm = os.path.join(work, "warm.txt")
        with open(warm, "w") as f:
            f.write("warm up")
        os.environ["HITHER_STORE_URL"] = os.path.join(work, "store-warm")
        hi.File(warm)  # imports and first-call costs outside the timed runs
        bench_make_file(work, size_mb, max(5, args.runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

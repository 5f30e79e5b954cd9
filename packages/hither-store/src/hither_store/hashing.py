"""Chunked sha1 hashing and copying with bounded memory.

Copies hash the bytes they write in the same pass, so a blob is always named by the bytes
it holds, even when the source changes while it is read.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Optional, Tuple

#: bytes per read/write; memory use of a copy is two of these
CHUNK = 8 * 1024 * 1024
#: below this a copy runs in the caller's thread (a helper thread costs more than it saves)
_THREAD_MIN = 2 * CHUNK

ReadInto = Callable[[memoryview], Optional[int]]
Write = Callable[[memoryview], object]


def sha1_of_buffers(buffers: Iterable[memoryview]) -> Tuple[str, int]:
    """(sha1 hex, total bytes) of buffers held in memory."""
    h = hashlib.sha1()
    total = 0
    for buf in buffers:
        h.update(buf)
        total += buf.nbytes
    return h.hexdigest(), total


def copy_hashing(readinto: ReadInto, write: Optional[Write], size_hint: int = -1,
                 chunk_size: int = CHUNK) -> Tuple[str, int]:
    """Read a stream to its end, hashing it and passing each chunk to ``write`` (if given).

    Returns (sha1 hex, bytes read). For large streams the write of one chunk runs in a helper
    thread while this thread hashes it and reads the next (hashlib and file I/O release the
    GIL), so a copy costs about max(hash, write) rather than their sum. Two buffers rotate:
    a buffer is refilled only after its previous write has finished.
    """
    if 0 <= size_hint < chunk_size:
        chunk_size = max(size_hint + 1, 64 * 1024)  # +1: the first read can already see EOF
    h = hashlib.sha1()
    total = 0
    bufs = [memoryview(bytearray(chunk_size))]
    if write is None or 0 <= size_hint < _THREAD_MIN:
        view = bufs[0]
        while True:
            n = readinto(view)
            if not n:
                return h.hexdigest(), total
            h.update(view[:n])
            if write is not None:
                write(view[:n])
            total += n
    bufs.append(memoryview(bytearray(chunk_size)))
    with ThreadPoolExecutor(1, thread_name_prefix="hither-store-write") as pool:
        pending: Optional[Future] = None
        i = 0
        try:
            while True:
                view = bufs[i % 2]
                n = readinto(view)
                if not n:
                    break
                chunk = view[:n]
                fut = pool.submit(write, chunk)
                h.update(chunk)
                if pending is not None:
                    pending.result()  # frees the other buffer, which the next read fills
                pending = fut
                total += n
                i += 1
        finally:
            if pending is not None:
                pending.result()  # re-raises a write error; never leaves a write running
    return h.hexdigest(), total


def write_all(write: Write, buffers: Iterable[memoryview], chunk_size: int = CHUNK,
              stop: Optional[Callable[[], bool]] = None) -> bool:
    """Write buffers in chunks of at most ``chunk_size``; False if ``stop()`` said to stop."""
    for buf in buffers:
        for start in range(0, buf.nbytes, chunk_size):
            if stop is not None and stop():
                return False
            write(buf[start:start + chunk_size])
    return True

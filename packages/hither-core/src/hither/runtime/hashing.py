"""SHA-1 of content as hither names it: of bytes, of buffers, of an open file, and while
copying a stream (one pass: content is named by the bytes written, even when the source
changes while it is read). Stdlib-only, Python >= 3.8 (part of the shipped runtime);
``hither.content.hashing`` builds its memoized file hashing and URIs on these. Example::

    with open(src, "rb", buffering=0) as f, open(dst, "wb") as out:
        digest, nbytes = copy_hashing(f.readinto, out.write)
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from concurrent.futures import Future
    from typing import Callable, Iterable, Optional, Tuple, Union

    ReadInto = Callable[[memoryview], Optional[int]]
    Write = Callable[[memoryview], object]

#: bytes per read/write of a hashing copy; memory use of a copy is two of these
CHUNK = 8 * 1024 * 1024
#: below this a copy runs in the caller's thread (a helper thread costs more than it saves)
_THREAD_MIN = 2 * CHUNK


def sha1_of_bytes(data: Union[bytes, bytearray, memoryview]) -> str:
    """sha1 (40 lowercase hex digits) of bytes held in memory."""
    import hashlib

    return hashlib.sha1(data).hexdigest()


def sha1_of_buffers(buffers: Iterable[memoryview]) -> Tuple[str, int]:
    """(sha1 hex, total bytes) of buffers held in memory, hashed as one stream."""
    import hashlib  # here: a runner that hashes nothing never loads it
    h = hashlib.sha1()
    total = 0
    for buf in buffers:
        h.update(buf)
        total += buf.nbytes
    return h.hexdigest(), total


def copy_hashing(readinto: ReadInto, write: Optional[Write], size_hint: int = -1,
                 chunk_size: int = CHUNK) -> Tuple[str, int]:
    """Read a stream to its end, hashing it and passing each chunk to ``write`` (if given).

    ``readinto`` is any binary file's ``readinto`` (a local file, an fsspec file object).
    Returns (sha1 hex, bytes read). For large streams the write of one chunk runs in a helper
    thread while this thread hashes it and reads the next (hashlib and file I/O release the
    GIL), so a copy costs about max(hash, write) rather than their sum. Two buffers rotate:
    a buffer is refilled only after its previous write has finished.
    """
    if 0 <= size_hint < chunk_size:
        chunk_size = max(size_hint + 1, 64 * 1024)  # +1: the first read can already see EOF
    if write is None or 0 <= size_hint < _THREAD_MIN:
        return _copy_in_thread(readinto, write, memoryview(bytearray(chunk_size)))
    return _copy_with_writer(readinto, write, chunk_size)


def _copy_in_thread(readinto: ReadInto, write: Optional[Write], view: memoryview) -> Tuple[str, int]:
    import hashlib  # here: a runner that hashes nothing never loads it
    h = hashlib.sha1()
    total = 0
    while True:
        n = readinto(view)
        if not n:
            return h.hexdigest(), total
        h.update(view[:n])
        if write is not None:
            write(view[:n])
        total += n


def _copy_with_writer(readinto: ReadInto, write: Write, chunk_size: int) -> Tuple[str, int]:
    from concurrent.futures import ThreadPoolExecutor

    import hashlib  # here: a runner that hashes nothing never loads it
    h = hashlib.sha1()
    total = 0
    bufs = [memoryview(bytearray(chunk_size)), memoryview(bytearray(chunk_size))]
    with ThreadPoolExecutor(1, thread_name_prefix="hither-hash-write") as pool:
        pending: Optional[Future[object]] = None
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


def sha1_of_fd(fd: int) -> str:
    """sha1 of what an open file holds from its current offset on, read in chunks."""
    with open(fd, "rb", buffering=0, closefd=False) as f:
        return copy_hashing(f.readinto, None)[0]


def copy_file_hashing(src: str, dest: str) -> str:
    """Copy the file ``src`` to ``dest`` (created) and return the sha1 of what was copied."""
    import os

    with open(src, "rb", buffering=0) as fin, open(dest, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        return copy_hashing(fin.readinto, fout.write, size_hint=size)[0]

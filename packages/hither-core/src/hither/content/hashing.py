"""The one sha1 helper of hither: of bytes, of buffers, of an open file, of a file by path
(memoized by path, size and mtime), while copying a stream; and ``sha1://<sha1>/<name>`` URIs.

Copies hash the bytes they write in the same pass, so content is always named by the bytes
written, even when the source changes while it is read. Example::

    digest = file_sha1("data.csv")                       # memoized: a second call reads nothing
    with open(src, "rb", buffering=0) as f, open(dst, "wb") as out:
        digest, nbytes = copy_hashing(f.readinto, out.write)
    uri = format_uri(digest, "data.csv")                 # 'sha1://<40 hex>/data.csv'
    assert parse_uri(uri) == (digest, "data.csv")
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, Optional, Tuple, Union

from hither.errors import HitherError

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

#: bytes per read/write of a hashing copy; memory use of a copy is two of these
CHUNK = 8 * 1024 * 1024
#: below this a copy runs in the caller's thread (a helper thread costs more than it saves)
_THREAD_MIN = 2 * CHUNK

ReadInto = Callable[[memoryview], Optional[int]]
Write = Callable[[memoryview], object]

_sha1_cache: Dict[Tuple[str, int, int], str] = {}
_sha1_lock = threading.Lock()
#: a file modified less than this long before it was hashed is not memoized: file system
#: timestamps are coarse (a few ms), so a same-size edit right after hashing could keep its
#: (size, mtime) and be mistaken for the hashed content
_RACY_NS = 2_000_000_000


def sha1_of_bytes(data: Union[bytes, bytearray, memoryview]) -> str:
    """sha1 (40 lowercase hex digits) of bytes held in memory."""
    return hashlib.sha1(data).hexdigest()


def sha1_of_buffers(buffers: Iterable[memoryview]) -> Tuple[str, int]:
    """(sha1 hex, total bytes) of buffers held in memory, hashed as one stream."""
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

    h = hashlib.sha1()
    total = 0
    bufs = [memoryview(bytearray(chunk_size)), memoryview(bytearray(chunk_size))]
    with ThreadPoolExecutor(1, thread_name_prefix="hither-hash-write") as pool:
        pending: "Optional[Future[object]]" = None
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


def sha1_of_fd(fd: int) -> str:
    """sha1 of what an open file holds from its current offset on, read in chunks."""
    with open(fd, "rb", buffering=0, closefd=False) as f:
        return copy_hashing(f.readinto, None)[0]


def file_sha1(path: Union[str, Path]) -> str:
    """sha1 of a file's content, read in chunks; memoized by (path, size, mtime)."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    with _sha1_lock:
        hit = _sha1_cache.get(key)
    if hit is not None:
        return hit
    fd = os.open(p, os.O_RDONLY)
    try:
        digest = sha1_of_fd(fd)
    finally:
        os.close(fd)
    remember_file_sha1(p, digest, st)
    return digest


def known_file_sha1(path: Union[str, Path]) -> Optional[str]:
    """The memoized sha1 of a file unchanged (path, size, mtime) since it was hashed, else
    None, without reading the file. Lets a store skip copying content it already holds."""
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError:
        return None
    with _sha1_lock:
        return _sha1_cache.get((p, st.st_size, st.st_mtime_ns))


def remember_file_sha1(path: Union[str, Path], digest: str, st: os.stat_result) -> None:
    """Record a file's sha1 computed elsewhere (a store hashes while it copies), keyed by
    ``st``, the file's stat taken before it was read; ``file_sha1`` then skips reading it."""
    if time.time_ns() - st.st_mtime_ns < _RACY_NS:
        return  # just written: a same-size edit could keep this mtime, so don't trust it
    p = os.path.abspath(os.fspath(path))
    with _sha1_lock:
        _sha1_cache[(p, st.st_size, st.st_mtime_ns)] = digest


def is_sha1_hex(text: str) -> bool:
    """Whether ``text`` is a sha1 digest as hither writes it: 40 lowercase hex digits."""
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


def parse_uri(uri: str) -> Tuple[str, str]:
    """Split ``sha1://<hex>/<name>`` into (hex, name), rejecting anything else."""
    if not isinstance(uri, str) or not uri.startswith("sha1://"):
        raise HitherError(f"not a hither content URI: {uri!r} (expected sha1://<40 hex digits>/<name>)")
    rest = uri[len("sha1://"):]
    digest, _, name = rest.partition("/")
    if not is_sha1_hex(digest):
        raise HitherError(f"bad sha1 in content URI {uri!r}: expected 40 lowercase hex digits")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise HitherError(f"bad file name in content URI {uri!r}: it must be a plain file name")
    return digest, name


def format_uri(digest: str, name: str) -> str:
    """``sha1://<digest>/<name>``, checked as ``parse_uri`` reads it (``HitherError`` for a
    name that is not a plain file name or a digest that is not 40 lowercase hex digits)."""
    uri = f"sha1://{digest}/{name}"
    parse_uri(uri)
    return uri

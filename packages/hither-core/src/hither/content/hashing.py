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

import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

from hither.errors import HitherError
# the hashing primitives live in the runtime (which ships alone and hashes returned files);
# this module adds memoized file hashing, stream writing and URIs, and is their public face
from hither.runtime import CHUNK, copy_hashing, sha1_of_buffers, sha1_of_bytes, sha1_of_fd

__all__ = ["CHUNK", "copy_hashing", "sha1_of_buffers", "sha1_of_bytes", "sha1_of_fd", "file_sha1", "format_uri",
           "is_sha1_hex", "known_file_sha1", "parse_uri", "remember_file_sha1", "write_all"]

ReadInto = Callable[[memoryview], Optional[int]]
Write = Callable[[memoryview], object]

_sha1_cache: Dict[Tuple[str, int, int], str] = {}
_sha1_lock = threading.Lock()
#: a file modified less than this long before it was hashed is not memoized: file system
#: timestamps are coarse (a few ms), so a same-size edit right after hashing could keep its
#: (size, mtime) and be mistaken for the hashed content
_RACY_NS = 2_000_000_000


def write_all(write: Write, buffers: Iterable[memoryview], chunk_size: int = CHUNK,
              stop: Optional[Callable[[], bool]] = None) -> bool:
    """Write buffers in chunks of at most ``chunk_size``; False if ``stop()`` said to stop."""
    for buf in buffers:
        for start in range(0, buf.nbytes, chunk_size):
            if stop is not None and stop():
                return False
            write(buf[start:start + chunk_size])
    return True


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

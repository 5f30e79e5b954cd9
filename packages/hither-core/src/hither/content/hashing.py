"""Content addressing: the sha1 of a file (memoized by path, size and mtime) and
``sha1://<sha1>/<name>`` URIs."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from hither.errors import HitherError

_CHUNK = 4 * 1024 * 1024
_sha1_cache: Dict[Tuple[str, int, int], str] = {}
_sha1_lock = threading.Lock()
#: a file modified less than this long before it was hashed is not memoized: file system
#: timestamps are coarse (a few ms), so a same-size edit right after hashing could keep its
#: (size, mtime) and be mistaken for the hashed content
_RACY_NS = 2_000_000_000


def sha1_of_fd(fd: int) -> str:
    """sha1 of what an open file holds from its current offset on, read in chunks."""
    h = hashlib.sha1()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return h.hexdigest()
            h.update(view[:n])


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
    if not uri.startswith("sha1://"):
        raise HitherError(f"not a hither content URI: {uri!r} (expected sha1://<40 hex digits>/<name>)")
    rest = uri[len("sha1://"):]
    digest, _, name = rest.partition("/")
    if not is_sha1_hex(digest):
        raise HitherError(f"bad sha1 in content URI {uri!r}: expected 40 lowercase hex digits")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise HitherError(f"bad file name in content URI {uri!r}: it must be a plain file name")
    return digest, name

"""``hi.File``: a file passed to or returned from a hither function, addressed by content."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from .errors import HitherError

_CHUNK = 4 * 1024 * 1024
_sha1_cache: Dict[Tuple[str, int, int], str] = {}
_sha1_lock = threading.Lock()


def file_sha1(path: Union[str, Path]) -> str:
    """sha1 of a file's content, read in chunks; memoized by (path, size, mtime)."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    with _sha1_lock:
        hit = _sha1_cache.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha1()
    with open(p, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    digest = h.hexdigest()
    with _sha1_lock:
        _sha1_cache[key] = digest
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


class File:
    """A file for a hither job: ``hi.File("data.csv")`` or ``hi.File.from_uri("sha1://...")``.

    As an argument it reaches the function as a local path string it can ``open()`` (unless
    the function opts out with ``@hi.opts(no_resolve_input_files=True)``, then it gets the
    ``File``). As a result it comes back as a ``File``. Its identity, for the job hash and the
    cache, is its content's sha1, not its path.
    """

    __slots__ = ("_path", "_uri", "_name")

    def __init__(self, path: Union[str, Path, None] = None, *, uri: Optional[str] = None) -> None:
        if path is None and uri is None:
            raise HitherError("hi.File needs a path or a uri")
        self._path = os.path.abspath(os.fspath(path)) if path is not None else None
        if uri is not None:
            parse_uri(uri)
        self._uri = uri
        self._name = os.path.basename(self._path) if self._path else parse_uri(uri)[1]  # type: ignore[arg-type]

    @classmethod
    def from_uri(cls, uri: str) -> "File":
        return cls(uri=uri)

    @property
    def path(self) -> Optional[str]:
        """The local path this File was made from, if any."""
        return self._path

    @property
    def name(self) -> str:
        return self._name

    @property
    def sha1(self) -> str:
        return parse_uri(self.uri)[0]

    @property
    def uri(self) -> str:
        """``sha1://<hex>/<name>``: stable, whatever the path."""
        if self._uri is None:
            if self._path is None or not os.path.exists(self._path):
                raise HitherError(f"hi.File: {self._path} does not exist")
            self._uri = f"sha1://{file_sha1(self._path)}/{self._name}"
        return self._uri

    def resolve(self) -> str:
        """A local path with this file's content: the original path while it holds the same
        content, else a copy from the store (needs hither-store)."""
        if self._path is not None and os.path.exists(self._path):
            if self._uri is None or file_sha1(self._path) == parse_uri(self._uri)[0]:
                return self._path
        from .stores import default_store

        return default_store().get_path(self.uri)

    def read_text(self, encoding: str = "utf-8") -> str:
        with open(self.resolve(), encoding=encoding) as f:
            return f.read()

    def __fspath__(self) -> str:
        return self.resolve()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __repr__(self) -> str:
        return f"hi.File({self._path!r})" if self._path else f"hi.File.from_uri({self._uri!r})"

    def __reduce__(self):  # pickles as (path, uri) so workers see the same identity
        return (_rebuild_file, (self._path, self._uri))


def _rebuild_file(path: Optional[str], uri: Optional[str]) -> File:
    f = File.__new__(File)
    f._path, f._uri = path, uri
    f._name = os.path.basename(path) if path else parse_uri(uri)[1]  # type: ignore[arg-type]
    return f

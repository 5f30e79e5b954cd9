"""hither-store's local folder of blobs: ``hither.content.layout.BlobFolder`` (the one layout,
shared with hither-core's ``ContentFolder``), with writes whose failures say what to do,
and reads checked against the sha1.

Used for local stores and for the local cache of content read from non-local stores. Where
a blob lives, how it is published atomically, the size hints (``sizes/<n>``), listing and
removal are ``hither.content.layout``'s; this module adds ``TempBlob`` (a blob being
written, as a context manager), ``StoreWriteError`` for every failure to write, and
``checked_path``: reading serves only a regular file (never a symlink), re-hashed once per
process and again whenever its inode, size, mtime or ctime change (any write changes ctime).
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from typing import Dict, IO, Optional, Tuple

from hither.content.hashing import copy_hashing
from hither.content.layout import BlobFolder, BlobPlaceTaken, kind_of

from .errors import StoreWriteError

logger = logging.getLogger("hither.store")

Stamp = Tuple[int, int, int, int, int]
#: blob path -> stamp of the file when this process last found (or wrote) the right content
_verified: Dict[str, Stamp] = {}
_verified_lock = threading.Lock()


def _stamp(st: os.stat_result) -> Stamp:
    # ctime cannot be set back by a user: a write in place always changes the stamp
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _remember(path: str, st: os.stat_result) -> None:
    with _verified_lock:
        _verified[path] = _stamp(st)


class BadBlob(Exception):
    """What is at a blob's place is not that blob (the message says what it is instead)."""


class TempBlob:
    """A file being written under ``tmp/``; ``commit(sha1)`` publishes it, else it vanishes.

    Use as a context manager: leaving the block without ``commit`` removes the file::

        with blobs.new_blob() as tmp:
            tmp.write(data)
            tmp.commit(sha1_of(data))

    Every failure to write is a ``StoreWriteError`` saying which folder and what to do.
    """

    def __init__(self, blobdir: "LocalBlobDir") -> None:
        self._dir = blobdir
        self.committed = False
        self.nbytes = 0
        with blobdir.writing():
            created: Tuple[str, IO[bytes]] = blobdir.create_temp()
        self.path, self.file = created

    def write(self, data: memoryview) -> None:
        with self._dir.writing():
            self.nbytes += self.file.write(data)

    def commit(self, digest: str) -> str:
        """Publish the written bytes as the blob ``digest``; returns the blob's path."""
        final = self._dir.path(digest)
        with self._dir.writing():
            self.file.close()
            try:
                placed = self._dir.publish(self.path, digest)
            except BlobPlaceTaken as exc:
                raise StoreWriteError(str(exc)) from None
            self.committed = True
            if placed:  # we hashed exactly these bytes: this process need not re-hash them
                _remember(final, os.lstat(final))
        self._dir.note_size(self.nbytes)
        return final

    def discard(self) -> None:
        self.file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "TempBlob":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.discard()


class LocalBlobDir(BlobFolder):
    """Blobs in a local folder (``hither.content.layout``): ``<root>/sha1/ab/cd/<sha1>`` plus
    ``<root>/tmp/``.

    ``what`` names the folder in messages ("the store", "the local cache of ..."), ``hint``
    says what to do when it cannot be written.
    """

    def __init__(self, root: str, what: str = "the store",
                 hint: str = "use another store (--url / $HITHER_STORE_URL)") -> None:
        super().__init__(root, what)
        self.hint = hint

    def writing(self) -> "_Writing":
        """A context turning an ``OSError`` into a ``StoreWriteError`` that says what to do."""
        return _Writing(self)

    def checked_path(self, digest: str) -> Optional[str]:
        """The blob's path, or None when there is none; ``BadBlob`` when what is there is not
        the blob: not a regular file, or content that does not hash to ``digest``. The content
        is re-hashed on this process's first read and whenever the file's stamp changes."""
        path = self.path(digest)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise BadBlob(f"a {kind_of(st.st_mode)}, not a blob file")
        with _verified_lock:
            if _verified.get(path) == _stamp(st):
                return path
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # swapped for a symlink since the lstat
                raise BadBlob("a symbolic link, not a blob file") from None
            raise
        with open(fd, "rb", buffering=0) as f:
            before = os.fstat(fd)
            got, _n = copy_hashing(f.readinto, None, before.st_size)
            after = os.fstat(fd)
        if got != digest:
            raise BadBlob(f"a file whose content hashes to {got}")
        if _stamp(before) != _stamp(after):
            raise BadBlob("a file being written to while it was checked")
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            return None
        if _stamp(now) != _stamp(after):
            raise BadBlob("a file replaced while it was checked")
        _remember(path, after)
        return path

    def remember_verified(self, digest: str, fd: int) -> None:
        """Record that the open file ``fd`` at the blob's place was found to hold ``digest``."""
        path = self.path(digest)
        st = os.fstat(fd)
        try:
            if _stamp(os.lstat(path)) == _stamp(st):
                _remember(path, st)
        except OSError:
            pass

    def new_blob(self) -> TempBlob:
        return TempBlob(self)

    def remove(self, digest: str) -> bool:
        """Delete the blob ``digest`` (or whatever is at its place); True if it was there."""
        with _verified_lock:
            _verified.pop(self.path(digest), None)
        with self.writing():
            return super().remove(digest)


class _Writing:
    def __init__(self, blobdir: LocalBlobDir) -> None:
        self._dir = blobdir

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> None:
        if isinstance(exc, OSError) and not isinstance(exc, StoreWriteError):
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise StoreWriteError(
                f"cannot write to {self._dir.what} at {self._dir.root}: "
                f"{exc.strerror or exc}{where}; make the folder writable with free space, or "
                f"{self._dir.hint}") from exc


"""A folder of blobs in the content-addressed layout, written atomically and checked on read.

Used for local stores and for the local cache of content read from non-local stores.
A blob is written under ``tmp/`` (same file system, so the final rename is atomic), made
read-only, then linked to ``sha1/ab/cd/<sha1>``: a reader sees a whole blob or none, a
process killed mid-write leaves only a file in ``tmp/``, and content that is already there
is never rewritten (unless what is there is not a whole blob: then it is repaired).

``sizes/<n>`` (empty files) note that a blob of ``n`` bytes (at least ``SIZE_HINT_MIN``) was
stored: a put of that size hashes before it copies, as the content is probably stored
already. They are hints only: stale or missing ones cost time, never correctness.

Reading (``checked_path``) serves only a regular file (never a symlink), re-hashed once per
process and again whenever its inode, size, mtime or ctime change (any write changes ctime).
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import threading
import uuid
from typing import Dict, IO, Iterator, Optional, Tuple

from .errors import StoreWriteError
from .hashing import copy_hashing
from .locations import blob_relpath, is_digest

logger = logging.getLogger("hither.store")

#: blobs are read-only so that a path handed out by get_path cannot alter the store
_BLOB_MODE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH

#: blobs from this size on leave a size hint (``sizes/<n>``)
SIZE_HINT_MIN = 32 * 1024 * 1024

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


def kind_of(mode: int) -> str:
    """A file type in words, for messages."""
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "special file"  # pragma: no cover


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
        self.path = os.path.join(blobdir.tmp_dir, f"{os.getpid()}-{uuid.uuid4().hex}.part")
        self.committed = False
        self.nbytes = 0
        with blobdir.writing():
            os.makedirs(blobdir.tmp_dir, exist_ok=True)
            # exclusive create: a name clash must never mix two writers' bytes
            self.file: IO[bytes] = open(self.path, "xb")

    def write(self, data: memoryview) -> None:
        with self._dir.writing():
            self.nbytes += self.file.write(data)

    def commit(self, digest: str) -> str:
        """Publish the written bytes as the blob ``digest``; returns the blob's path."""
        final = self._dir.path(digest)
        with self._dir.writing():
            self.file.close()
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.chmod(self.path, _BLOB_MODE)
            try:
                # link, unlike rename, fails when the blob exists: what is stored is never rewritten
                os.link(self.path, final)
                placed = True
            except FileExistsError:
                placed = self._settle_existing(final, digest)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if os.path.lexists(final):
                    placed = self._settle_existing(final, digest)
                else:  # a file system without hard links
                    os.replace(self.path, final)
                    placed = True
            self.discard()
            self.committed = True
            if placed:  # we hashed exactly these bytes: this process need not re-hash them
                _remember(final, os.lstat(final))
        self._dir.note_size(self.nbytes)
        return final

    def _settle_existing(self, final: str, digest: str) -> bool:
        """Something is at the blob's place already: keep a whole blob (False), or repair
        anything else with the bytes just written (True)."""
        st = os.lstat(final)
        if stat.S_ISREG(st.st_mode) and st.st_size == self.nbytes:
            logger.debug("blob %s was stored meanwhile by another writer", digest)
            return False
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(final)  # an empty folder is nobody's data: repair
            except OSError:
                raise StoreWriteError(
                    f"{self._dir.what} at {self._dir.root} has a non-empty directory where the "
                    f"blob {digest} belongs ({final}); nothing was stored. Move that directory "
                    "away (it is not a blob) and put the content again") from None
            os.link(self.path, final)
            return True
        # a symlink, a FIFO, a truncated or overlong file: replace it with the real blob
        logger.warning("%s at %s held a %s of %d bytes where blob %s (%d bytes) belongs; "
                       "replaced it with the content just put", self._dir.what, self._dir.root,
                       kind_of(st.st_mode), st.st_size, digest, self.nbytes)
        os.replace(self.path, final)
        return True

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


class LocalBlobDir:
    """Blobs in a local folder: ``<root>/sha1/ab/cd/<sha1>`` plus ``<root>/tmp/``.

    ``what`` names the folder in messages ("the store", "the local cache of ..."), ``hint``
    says what to do when it cannot be written.
    """

    def __init__(self, root: str, what: str = "the store",
                 hint: str = "use another store (--url / $HITHER_STORE_URL)") -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.sizes_dir = os.path.join(self.root, "sizes")
        self.what = what
        self.hint = hint

    def path(self, digest: str) -> str:
        return os.path.join(self.root, *blob_relpath(digest).split("/"))

    def writing(self) -> "_Writing":
        """A context turning an ``OSError`` into a ``StoreWriteError`` that says what to do."""
        return _Writing(self)

    def has(self, digest: str, size: Optional[int] = None) -> bool:
        """Whether a regular file (not a symlink) is at the blob's place, of ``size`` if given."""
        try:
            st = os.lstat(self.path(digest))
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size)

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

    def note_size(self, nbytes: int) -> None:
        """Leave the hint that a blob of ``nbytes`` is stored (large blobs only)."""
        if nbytes < SIZE_HINT_MIN:
            return
        try:
            os.makedirs(self.sizes_dir, exist_ok=True)
            os.close(os.open(os.path.join(self.sizes_dir, str(nbytes)), os.O_CREAT | os.O_WRONLY, 0o644))
        except OSError as exc:  # a hint: the blob is stored all the same
            logger.debug("no size hint for %d bytes in %s: %s", nbytes, self.root, exc)

    def may_hold_size(self, nbytes: int) -> bool:
        """Whether a blob of ``nbytes`` was probably stored (always False below the hint size)."""
        return nbytes >= SIZE_HINT_MIN and os.path.exists(os.path.join(self.sizes_dir, str(nbytes)))

    def new_blob(self) -> TempBlob:
        return TempBlob(self)

    def remove(self, digest: str) -> bool:
        path = self.path(digest)
        with _verified_lock:
            _verified.pop(path, None)
        with self.writing():
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)  # inside the store's own layout: never user data
                else:
                    os.unlink(path)
                return True
            except FileNotFoundError:
                return False

    def iter_blobs(self) -> Iterator[Tuple[str, int]]:
        """(sha1, size) of every blob; files that are not blobs are skipped. Anything else at a
        blob's place (a directory) is listed with size 0, so ``verify`` reports it."""
        top = os.path.join(self.root, "sha1")
        for dirpath, dirs, files in os.walk(top):
            for name in [d for d in dirs if is_digest(d)]:
                dirs.remove(name)
                yield name, 0
            for name in files:
                if is_digest(name):
                    try:
                        yield name, os.stat(os.path.join(dirpath, name)).st_size
                    except OSError:  # removed while listing, or a dangling symlink
                        yield name, 0


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


"""The one on-disk layout of a local content folder: where a blob lives under a root, temp
names, atomic publish, size hints, listing and removal. hither-core's ``ContentFolder`` and
hither-store's local store (and its local cache of a remote store) are both built on it.

The layout (pinned by ``tests/test_core_content_layout.py``; existing stores and Slurm
working folders depend on it)::

    <root>/sha1/<ab>/<cd>/<sha1>    a blob: the content, read-only (0444), named by its sha1
    <root>/tmp/<pid>-<32 hex>.part  a blob being written (removed once published or failed)
    <root>/sizes/<n>                empty file: a blob of n bytes (>= SIZE_HINT_MIN) is stored

Remote stores use the same relative keys (``blob_relpath``). A blob is written under
``tmp/`` (the same file system, so publishing is atomic), made read-only, then hard-linked
to its place: a reader sees a whole blob or none, a process killed mid-write leaves only a
file in ``tmp/``, and content already there is never rewritten (unless what is there is
not a whole blob: then it is repaired). Example::

    blobs = BlobFolder("/tmp/content")
    tmp, f = blobs.create_temp()
    with f:
        f.write(b"hello")
    blobs.publish(tmp, sha1_of_bytes(b"hello"))
    assert blobs.has(sha1_of_bytes(b"hello"), size=5)
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import uuid
from typing import IO, Iterator, Optional, Tuple

from hither.content.hashing import is_sha1_hex
from hither.errors import HitherError

logger = logging.getLogger("hither.content.layout")

#: blobs are read-only so that a path handed out cannot alter the folder by accident
BLOB_MODE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
#: blobs from this size on leave a size hint (``sizes/<n>``)
SIZE_HINT_MIN = 32 * 1024 * 1024
#: the errors of ``os.link`` on a file system without hard links
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)


def blob_relpath(digest: str) -> str:
    """``sha1/ab/cd/<digest>``: a blob's place under a root (two levels of fan-out keep
    directories small); the same for local folders and remote stores' keys."""
    return f"sha1/{digest[:2]}/{digest[2:4]}/{digest}"


def kind_of(mode: int) -> str:
    """A file type in words, for messages."""
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "special file"  # pragma: no cover


class BlobPlaceTaken(HitherError, OSError):
    """A non-empty directory is where a blob belongs: nothing was published (it is not
    removed: it may hold someone's data)."""


class BlobFolder:
    """Blobs in a local folder: ``<root>/sha1/ab/cd/<sha1>`` plus ``<root>/tmp/`` and
    ``<root>/sizes/``. ``what`` names the folder in messages ("the content folder", "the
    store ...")."""

    def __init__(self, root: str, what: str = "the content folder") -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.sizes_dir = os.path.join(self.root, "sizes")
        self.what = what

    def path(self, digest: str) -> str:
        """Where the blob ``digest`` lives (whether or not it is there)."""
        return os.path.join(self.root, *blob_relpath(digest).split("/"))

    # -- writing ---------------------------------------------------------------------------

    def temp_path(self) -> str:
        """A fresh name under ``tmp/`` (created if missing) for a blob about to be written."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        return os.path.join(self.tmp_dir, f"{os.getpid()}-{uuid.uuid4().hex}.part")

    def create_temp(self) -> Tuple[str, IO[bytes]]:
        """(path, binary file open for writing) of a new file under ``tmp/``, created
        exclusively: a name clash never mixes two writers' bytes."""
        path = self.temp_path()
        return path, open(path, "xb")

    def publish(self, tmp: str, digest: str) -> bool:
        """Make the (closed) file ``tmp`` the blob ``digest``, atomically, and remove ``tmp``.
        A whole blob already there is kept (never rewritten): False. Anything else at the
        blob's place (a symlink, a truncated file, an empty directory) is replaced: True.
        ``BlobPlaceTaken`` when a non-empty directory is there."""
        final = self.path(digest)
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.chmod(tmp, BLOB_MODE)
            try:
                os.link(tmp, final)  # unlike rename, fails when the blob exists: never rewritten
                return True
            except FileExistsError:
                return self._settle_existing(tmp, final, digest)
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                if os.path.lexists(final):
                    return self._settle_existing(tmp, final, digest)
                os.replace(tmp, final)  # a file system without hard links
                return True
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _settle_existing(self, tmp: str, final: str, digest: str) -> bool:
        """Something is at the blob's place already: keep a whole blob (False), or repair
        anything else with the bytes of ``tmp`` (True)."""
        st = os.lstat(final)
        nbytes = os.stat(tmp).st_size
        if stat.S_ISREG(st.st_mode) and st.st_size == nbytes:
            logger.debug("blob %s was stored meanwhile by another writer", digest)
            return False
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(final)  # an empty folder is nobody's data: repair
            except OSError:
                raise BlobPlaceTaken(
                    f"{self.what} at {self.root} has a non-empty directory where the blob "
                    f"{digest} belongs ({final}); nothing was stored. Move that directory away "
                    "(it is not a blob) and put the content again") from None
            os.link(tmp, final)
            return True
        # a symlink, a FIFO, a truncated or overlong file: replace it with the real blob
        logger.warning("%s at %s held a %s of %d bytes where blob %s (%d bytes) belongs; "
                       "replaced it with the content just put", self.what, self.root,
                       kind_of(st.st_mode), st.st_size, digest, nbytes)
        os.replace(tmp, final)
        return True

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

    # -- reading, listing, removing --------------------------------------------------------

    def has(self, digest: str, size: Optional[int] = None) -> bool:
        """Whether a regular file (not a symlink) is at the blob's place, of ``size`` if given."""
        try:
            st = os.lstat(self.path(digest))
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size)

    def remove(self, digest: str) -> bool:
        """Delete the blob ``digest`` (or whatever is at its place); True if it was there."""
        path = self.path(digest)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)  # inside the folder's own layout: never user data
            else:
                os.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def iter_blobs(self) -> Iterator[Tuple[str, int]]:
        """(sha1, size) of every blob; files that are not blobs are skipped. Anything else at a
        blob's place (a directory) is listed with size 0, so a verification reports it."""
        top = os.path.join(self.root, "sha1")
        for dirpath, dirs, files in os.walk(top):
            for name in [d for d in dirs if is_sha1_hex(d)]:
                dirs.remove(name)
                yield name, 0
            for name in files:
                if is_sha1_hex(name):
                    try:
                        yield name, os.stat(os.path.join(dirpath, name)).st_size
                    except OSError:  # removed while listing, or a dangling symlink
                        yield name, 0

    def iter_partials(self) -> Iterator[Tuple[str, float]]:
        """(path, mtime) of every file under ``tmp/``: blobs being written, or left behind by
        a process that died mid-write."""
        try:
            names = os.listdir(self.tmp_dir)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.tmp_dir, name)
            try:
                yield path, os.stat(path).st_mtime
            except FileNotFoundError:
                continue

"""A folder of blobs in the content-addressed layout, written atomically.

Used for local stores and for the local cache of content read from non-local stores.
A blob is written under ``tmp/`` (same file system, so the final rename is atomic), made
read-only, then linked to ``sha1/ab/cd/<sha1>``: a reader sees a whole blob or none, a
process killed mid-write leaves only a file in ``tmp/``, and content that is already there
is never rewritten.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import uuid
from typing import IO, Iterator, Tuple

from .locations import blob_relpath, is_digest

logger = logging.getLogger("hither.store")

#: blobs are read-only so that a path handed out by get_path cannot alter the store
_BLOB_MODE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class TempBlob:
    """A file being written under ``tmp/``; ``commit(sha1)`` publishes it, else it vanishes.

    Use as a context manager: leaving the block without ``commit`` removes the file::

        with blobs.new_blob() as tmp:
            tmp.file.write(data)
            tmp.commit(sha1_of(data))
    """

    def __init__(self, blobdir: "LocalBlobDir") -> None:
        self._dir = blobdir
        self.path = os.path.join(blobdir.tmp_dir, f"{os.getpid()}-{uuid.uuid4().hex}.part")
        os.makedirs(blobdir.tmp_dir, exist_ok=True)
        # exclusive create: a name clash must never mix two writers' bytes
        self.file: IO[bytes] = open(self.path, "xb")
        self.committed = False

    def commit(self, digest: str) -> str:
        """Publish the written bytes as the blob ``digest``; returns the blob's path."""
        self.file.close()
        final = self._dir.path(digest)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.chmod(self.path, _BLOB_MODE)
        try:
            # link, unlike rename, fails when the blob exists: what is stored is never rewritten
            os.link(self.path, final)
        except FileExistsError:
            logger.debug("blob %s was stored meanwhile by another writer", digest)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if not os.path.exists(final):  # a file system without hard links
                os.replace(self.path, final)
        self.discard()
        self.committed = True
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


class LocalBlobDir:
    """Blobs in a local folder: ``<root>/sha1/ab/cd/<sha1>`` plus ``<root>/tmp/``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.tmp_dir = os.path.join(self.root, "tmp")

    def path(self, digest: str) -> str:
        return os.path.join(self.root, *blob_relpath(digest).split("/"))

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def new_blob(self) -> TempBlob:
        return TempBlob(self)

    def remove(self, digest: str) -> bool:
        try:
            os.unlink(self.path(digest))
            return True
        except FileNotFoundError:
            return False

    def iter_blobs(self) -> Iterator[Tuple[str, int]]:
        """(sha1, size) of every blob; files that are not blobs are skipped."""
        top = os.path.join(self.root, "sha1")
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if is_digest(name):
                    try:
                        yield name, os.stat(os.path.join(dirpath, name)).st_size
                    except FileNotFoundError:  # removed while listing
                        continue

"""Where ``hi.File`` keeps content on this machine (``file_store()``), hither-core's own
content folder (``ContentFolder``, a ``Store``), and copy-on-write cloning of files.

``file_store()`` is hither-store's store (``hither.content.stores.default_store()``) when it is a
local folder; otherwise (hither-store not installed, or the store is ``s3://...``) it is a
``ContentFolder``: the same layout as a local hither-store store (``hither.content.layout``:
``<root>/sha1/ab/cd/<sha1>`` plus ``<root>/tmp/``, written by the same code: a whole blob or
none; stored content is never rewritten), at ``$HITHER_STORE_URL`` when that is a local
folder, else ``~/.cache/hither/store`` (``$XDG_CACHE_HOME/hither/store``). Either way a
File's content lands in one local folder, which ``hither-store prune`` (or deleting the
folder) cleans. Example::

    store = file_store()
    uri = store.put_file("data.csv")           # sha1://<40 hex>/data.csv, a clone or a copy
    path = store.get_path(uri)                 # read-only file holding that content
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Optional, Union

from hither.content.hashing import (format_uri, known_file_sha1, parse_uri, remember_file_sha1,
                                    sha1_of_bytes, sha1_of_fd)
from hither.content.layout import BlobFolder
from hither.content.stores import default_store
from hither.errors import HitherError, PluginNotInstalledError
from hither.plugins.interfaces import ContentNotFoundError, Store

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

logger = logging.getLogger("hither.content.folder")

#: Linux ``FICLONE`` ioctl (``_IOW(0x94, 9, int)``): share the source's extents copy-on-write
#: (btrfs, XFS with reflink, bcachefs, OCFS2; ext4 and tmpfs refuse it)
FICLONE = 0x40049409


def clone_fd(src_fd: int, dest_fd: int) -> bool:
    """Make the (empty) file ``dest_fd`` a copy-on-write clone of ``src_fd``: no data is
    copied, and a later write to either file leaves the other unchanged (unlike a hard
    link). False where the file system or platform cannot clone."""
    if not sys.platform.startswith("linux"):
        return False
    import fcntl

    try:
        fcntl.ioctl(dest_fd, getattr(fcntl, "FICLONE", FICLONE), src_fd)
    except OSError as exc:  # EOPNOTSUPP, EXDEV (two file systems), EINVAL, ENOTTY, ...
        code = errno.errorcode.get(exc.errno, exc.errno) if exc.errno is not None else exc
        logger.debug("no copy-on-write clone (%s): copying", code)
        return False
    return True


def clone_or_copy(src: str, dest: str) -> None:
    """Write ``dest`` as a clone of ``src`` where the file system can, else as a copy; never
    a hard link, so writing to ``dest`` cannot change ``src`` (or the other way round)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        if clone_fd(fin.fileno(), fout.fileno()):
            return
    shutil.copyfile(src, dest)


class ContentFolder(Store):
    """hither-core's own content store: a folder of blobs on this machine
    (``hither.content.layout``). ``hi.File`` keeps content in one when hither-store is not
    installed (or its store is not local), and a SlurmJobHandler's working folder keeps
    results in one (``store/``). Example::

        folder = ContentFolder("/tmp/content")
        uri = folder.put_file("data.csv")     # sha1://…/data.csv
        assert open(folder.get_path(uri)).read() == open("data.csv").read()
    """

    name = "content-folder"
    is_local = True

    def __init__(self, root: str) -> None:
        #: the blobs on disk: what pruning and listing work on
        self.local_blobs = BlobFolder(root, "the content folder")
        self.root = self.local_blobs.root
        self.tmp_dir = self.local_blobs.tmp_dir

    # -- putting ---------------------------------------------------------------------------

    def put_file(self, path: "Union[str, Path]", name: Optional[str] = None) -> str:
        """Store the content of ``path``; return ``sha1://<sha1>/<name>``. The stored blob is
        a clone of the file where the file system can, else a copy (``shutil.copyfile``:
        in the kernel), hashed once written."""
        path = os.fspath(path)
        name = os.path.basename(path) if name is None else name
        format_uri("0" * 40, name)  # a plain file name, as URIs need
        st = os.stat(path)
        known = known_file_sha1(path)
        if known is not None and self.local_blobs.has(known):
            return format_uri(known, name)
        tmp = self.local_blobs.temp_path()
        try:
            # a private clone or copy first, then its hash: the source may change meanwhile,
            # the copy cannot, so the blob is named by exactly the bytes it holds
            clone_or_copy(path, tmp)
            digest = _sha1_of_path(tmp)
            self.local_blobs.publish(tmp, digest)
        finally:
            _unlink_if_there(tmp)
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino):
            remember_file_sha1(path, digest, st)
        return format_uri(digest, name)

    def put_bytes(self, data: bytes, name: str = "data") -> str:
        """Store bytes (or any contiguous buffer); return ``sha1://<sha1>/<name>``."""
        if isinstance(data, str):
            raise TypeError("put_bytes needs bytes, not str: encode the text first")
        format_uri("0" * 40, name)
        view = memoryview(data).cast("B")
        digest = sha1_of_bytes(view)
        if not self.local_blobs.has(digest, view.nbytes):
            tmp, f = self.local_blobs.create_temp()
            try:
                with f:
                    f.write(view)
                self.local_blobs.publish(tmp, digest)
            finally:
                _unlink_if_there(tmp)
        return format_uri(digest, name)

    def put_array(self, array: "np.ndarray", name: str = "array.npy") -> str:
        """Store an array as the ``.npy`` file ``np.save`` writes; return its URI."""
        import numpy as np

        format_uri("0" * 40, name)
        if isinstance(array, np.ma.MaskedArray):
            raise HitherError("cannot store a masked array as .npy (the mask would be lost); "
                              "store its .data and its .mask as two arrays")
        tmp, f = self.local_blobs.create_temp()
        try:
            with f:
                try:
                    np.save(f, np.asarray(array), allow_pickle=False)
                except ValueError as exc:  # object arrays: .npy without pickle cannot hold them
                    raise HitherError(f"cannot store this array as .npy: {exc}") from None
            digest = _sha1_of_path(tmp)
            self.local_blobs.publish(tmp, digest)
        finally:
            _unlink_if_there(tmp)
        return format_uri(digest, name)

    # -- getting ---------------------------------------------------------------------------

    def get_path(self, uri: str) -> str:
        """The read-only local file holding the content of ``uri`` (the blob itself)."""
        digest = parse_uri(uri)[0]
        if not self.local_blobs.has(digest):
            raise ContentNotFoundError(f"the content folder {self.root} holds no content for {uri}")
        return self.local_blobs.path(digest)

    def exists(self, uri: str) -> bool:
        return self.local_blobs.has(parse_uri(uri)[0])

    def open(self, uri: str) -> IO[bytes]:
        """A binary file object reading the content of ``uri``."""
        return open(self.get_path(uri), "rb")

    def load_array(self, uri: str, mmap: bool = True) -> "np.ndarray":
        """The ``.npy`` array stored under ``uri``. With ``mmap`` (default) a copy-on-write
        memory map: only the pages touched are read, and writing to the array changes this
        process's copy, never the stored blob."""
        import numpy as np

        path = self.get_path(uri)
        try:
            return np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise HitherError(f"the content of {uri} is not a readable .npy array ({exc})") from exc

    def verify(self, uri: str) -> bool:
        """Re-read and re-hash the blob; True when it matches ``uri`` (False for anything
        but a regular file at its place). ``ContentNotFoundError`` when there is nothing."""
        digest = parse_uri(uri)[0]
        path = self.local_blobs.path(digest)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ContentNotFoundError(f"the content folder {self.root} holds no content for {uri}") from None
        if not stat.S_ISREG(st.st_mode):
            logger.warning("blob %s in %s is not a file", digest, self.root)
            return False
        got = _sha1_of_path(path)
        if got != digest:
            logger.warning("blob %s in %s is corrupt: its content hashes to %s", digest, self.root, got)
        return got == digest

    # two folders at one root are one store (``Job.result_for`` passes references between them)
    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContentFolder) and other.root == self.root

    def __hash__(self) -> int:
        return hash(("ContentFolder", self.root))

    def __repr__(self) -> str:
        return f"hither.content.folder.ContentFolder({self.root!r})"


def _sha1_of_path(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        return sha1_of_fd(fd)
    finally:
        os.close(fd)


def _unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def builtin_root() -> str:
    """Where the built-in content folder is: ``$HITHER_STORE_URL`` when that is a local
    folder, else ``hither/store`` in ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    url = os.environ.get("HITHER_STORE_URL")
    if url and "://" not in url and "::" not in url:
        return os.path.abspath(os.path.expanduser(url))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hither", "store")


_builtin: Optional[ContentFolder] = None


def builtin_folder() -> ContentFolder:
    """The built-in content folder at ``builtin_root()``."""
    global _builtin
    root = builtin_root()
    folder = _builtin
    if folder is None or folder.root != root:
        folder = _builtin = ContentFolder(root)
    return folder


def _default_store() -> Optional[Store]:
    try:
        return default_store()
    except PluginNotInstalledError:  # hither-core alone
        return None


def file_store() -> Store:
    """Where ``hi.File(path)`` puts content: the default store when it is a local folder
    (hither-store), else the built-in content folder."""
    store = _default_store()
    if store is not None and store.is_local:
        return store
    return builtin_folder()


def find_local(uri: str) -> Optional[str]:
    """The local file holding the content of ``uri`` in ``file_store()``, or None."""
    try:
        return file_store().get_path(uri)
    except FileNotFoundError:
        return None


def fetch(uri: str, what: str) -> str:
    """A local file with the content of ``uri`` from the default store (downloaded and
    verified if it is remote); a clear FileNotFoundError naming ``what`` if none has it."""
    store = _default_store()
    if store is None:
        raise FileNotFoundError(
            f"{what}: its content ({uri}) is not in the content folder {builtin_folder().root}: it "
            "was removed from there, or the File was made on another machine. Make the File "
            "again from its file, or install hither-store and set HITHER_STORE_URL to a "
            "store that holds it")
    return store.get_path(uri)


def touch(path: str) -> None:
    """Mark stored content as just used (its mtime), so pruning by age keeps it."""
    try:
        os.utime(path)
    except OSError:  # a blob owned by another user: age is only advisory
        pass

"""Where ``hi.File`` keeps content on this machine (``file_store()``), hither-core's own
content folder (``ContentFolder``), and copy-on-write cloning of files.

``file_store()`` is hither-store's store (``hither.content.stores.default_store()``) when it is a
local folder; otherwise (hither-store not installed, or the store is ``s3://...``) it is a
``ContentFolder``: the same layout as a local hither-store store, ``<root>/sha1/ab/cd/<sha1>``
plus ``<root>/tmp/``, written the same way (a whole blob or none; stored content is never
rewritten), at ``$HITHER_STORE_URL`` when that is a local folder, else
``~/.cache/hither/store`` (``$XDG_CACHE_HOME/hither/store``). Either way a File's content
lands in one local folder, which ``hither-store prune`` (or deleting the folder) cleans.
Example::

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
import uuid
from typing import Any, Optional, Protocol

from hither.content.hashing import known_file_sha1, parse_uri, remember_file_sha1, sha1_of_fd
from hither.errors import PluginNotInstalledError
from hither.content.stores import default_store

logger = logging.getLogger("hither.content.folder")

#: Linux ``FICLONE`` ioctl (``_IOW(0x94, 9, int)``): share the source's extents copy-on-write
#: (btrfs, XFS with reflink, bcachefs, OCFS2; ext4 and tmpfs refuse it)
FICLONE = 0x40049409
#: blobs are read-only so that a path handed out cannot alter the store by accident
_BLOB_MODE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class FileStore(Protocol):
    """What ``hi.File`` needs of a store: hither-store's ``Store`` and ``ContentFolder``."""

    def put_file(self, path: str, name: Optional[str] = None) -> str: ...

    def get_path(self, uri: str) -> str: ...


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
        logger.debug("no copy-on-write clone (%s): copying", errno.errorcode.get(exc.errno, exc.errno))
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


class ContentFolder:
    """hither-core's own content-addressed folder of files, used by ``hi.File`` when
    hither-store is not installed (or its store is not local), and as the result store of a
    SlurmJobHandler's working folder (``put_file``/``get_path``/``load_array`` are what
    ``hither.outside.documents`` and ``hither.values.refs`` need of a store). Example::

        folder = ContentFolder("/tmp/content")
        uri = folder.put_file("data.csv")     # sha1://…/data.csv
        assert open(folder.get_path(uri)).read() == open("data.csv").read()
    """

    is_local = True

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.tmp_dir = os.path.join(self.root, "tmp")

    def path(self, digest: str) -> str:
        return os.path.join(self.root, "sha1", digest[:2], digest[2:4], digest)

    def put_file(self, path: str, name: Optional[str] = None) -> str:
        """Store the content of ``path``; return ``sha1://<sha1>/<name>``. The stored blob is
        a clone of the file where the file system can, else a copy (``shutil.copyfile``:
        in the kernel), hashed once written."""
        path = os.fspath(path)
        name = os.path.basename(path) if name is None else name
        parse_uri(f"sha1://{'0' * 40}/{name}")  # a plain file name, as URIs need
        st = os.stat(path)
        known = known_file_sha1(path)
        if known is not None and os.path.isfile(self.path(known)):
            return f"sha1://{known}/{name}"
        os.makedirs(self.tmp_dir, exist_ok=True)
        tmp = os.path.join(self.tmp_dir, f"{os.getpid()}-{uuid.uuid4().hex}.part")
        try:
            # a private clone or copy first, then its hash: the source may change meanwhile,
            # the copy cannot, so the blob is named by exactly the bytes it holds
            clone_or_copy(path, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                digest = sha1_of_fd(fd)
            finally:
                os.close(fd)
            self._publish(tmp, digest)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino):
            remember_file_sha1(path, digest, st)
        return f"sha1://{digest}/{name}"

    def _publish(self, tmp: str, digest: str) -> None:
        final = self.path(digest)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.chmod(tmp, _BLOB_MODE)
        try:
            os.link(tmp, final)  # unlike rename, fails when the blob exists: never rewritten
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if not os.path.exists(final):  # a file system without hard links
                os.replace(tmp, final)

    def get_path(self, uri: str) -> str:
        """The read-only local file holding the content of ``uri``."""
        path = self.path(parse_uri(uri)[0])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the content folder {self.root} holds no content for {uri}")
        return path

    def exists(self, uri: str) -> bool:
        return os.path.isfile(self.path(parse_uri(uri)[0]))

    def open(self, uri: str) -> Any:
        """A binary file object reading the content of ``uri``."""
        return open(self.get_path(uri), "rb")

    def load_array(self, uri: str, mmap: bool = True) -> Any:
        """The ``.npy`` array stored under ``uri``. With ``mmap`` (default) a copy-on-write
        memory map: only the pages touched are read, and writing to the array changes this
        process's copy, never the stored blob."""
        import numpy as np

        return np.load(self.get_path(uri), mmap_mode="c" if mmap else None, allow_pickle=False)

    # two folders at one root are one store (``Job.result_for`` passes references between them)
    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContentFolder) and other.root == self.root

    def __hash__(self) -> int:
        return hash(("ContentFolder", self.root))

    def __repr__(self) -> str:
        return f"hither.content.folder.ContentFolder({self.root!r})"


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


def _default_store() -> Any:
    try:
        return default_store()
    except PluginNotInstalledError:  # hither-core alone
        return None


def file_store() -> FileStore:
    """Where ``hi.File(path)`` puts content: the default store when it is a local folder
    (hither-store), else the built-in content folder."""
    store = _default_store()
    if store is not None and getattr(store, "is_local", False):
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

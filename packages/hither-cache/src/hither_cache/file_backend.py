"""The file cache backend: one folder per entry, sharded by the first two hex digits.

Layout::

    <root>/ab/ab12...ef/entry.json     metadata + the encoded result (FileEntryDoc)
    <root>/ab/ab12...ef/a0.npy         each array of the result, beside it

A put writes a complete entry into a temporary folder beside its final place and renames
it there. Renaming a folder onto a non-empty folder fails on POSIX, so an older entry is
first renamed aside (then removed): in between, readers see no entry (a miss), never half
of one. A reader opens the entry folder once and reads every file relative to that open
folder, so an entry replaced while it is being read is still read whole, from one version.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from numbers import Integral
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np

from hither.errors import ConfigError
from hither.plugins.interfaces import CacheBackend
from hither.models import CacheEntry
from hither.values.codec import decode, encode

from . import npy
from .documents import ArrayFile, EntryMeta, EntrySummary, FileEntryDoc
from .errors import CacheError

logger = logging.getLogger("hither.cache")

_ENTRY = "entry.json"
_HASH_RE = re.compile(r"^[0-9a-f]{6,128}$")
_SHARD_RE = re.compile(r"^[0-9a-f]{2}$")
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
#: leftovers of writers that died are removed by clear() once older than this
_STALE_SECONDS = 3600.0
_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
#: an entry's files are never read through a symlink (it could lead out of the cache)
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)


class _Unreadable(Exception):
    """The entry folder exists but does not hold a valid entry."""


class FileCacheBackend(CacheBackend):
    """Cache entries as folders of files under ``path`` (any local or network file system).

    Arrays are saved as ``.npy`` files and memory-mapped on a hit (copy-on-write: the
    result can be modified in memory without touching the cache); arrays smaller than
    ``mmap_min_bytes`` are read into memory, which is cheaper than a mapping. ``fsync=True``
    flushes each entry to disk before it becomes visible (slower; without it an entry torn
    by a power loss is detected on read and counts as a miss). Usage::

        import hither as hi
        from hither_cache import FileCacheBackend

        with hi.Config(job_cache=hi.JobCache(path="~/hither-cache")):   # loads this backend
            result = add.run(x=1, y=2).wait()

        backend = FileCacheBackend("~/hither-cache")
        print(sum(1 for _ in backend.iter_hashes()), "entries in", backend.describe())
    """

    name = "file"

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, mmap_min_bytes: int = 1 << 20,
                 fsync: bool = False) -> None:
        self.root = Path(os.path.expanduser(os.fspath(path))).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self._root = str(self.root)  # plain strings on the hit path: pathlib costs ~10 us a hit
        if isinstance(mmap_min_bytes, bool) or not isinstance(mmap_min_bytes, Integral) or mmap_min_bytes < 0:
            raise ConfigError(f"FileCacheBackend(mmap_min_bytes={mmap_min_bytes!r}) must be a whole "
                              "number of bytes, 0 or more (0: memory-map every array)")
        self.mmap_min_bytes: int = int(mmap_min_bytes)
        self.fsync: bool = bool(fsync)

    def __repr__(self) -> str:
        return f"FileCacheBackend({str(self.root)!r})"

    def describe(self) -> str:
        return f"file cache at {self.root}"

    # ------------------------------------------------------------------ paths
    def _check_hash(self, job_hash: str) -> str:
        if not isinstance(job_hash, str) or not _HASH_RE.match(job_hash):
            raise ValueError(f"not a job hash: {job_hash!r} (expected lowercase hex digits)")
        return job_hash

    def entry_dir(self, job_hash: str) -> Path:
        """The folder that holds the entry of ``job_hash`` (whether or not it exists)."""
        self._check_hash(job_hash)
        return self.root / job_hash[:2] / job_hash

    # ------------------------------------------------------------------ write
    def put(self, entry: CacheEntry) -> None:
        target = self.entry_dir(entry.job_hash)
        shard = target.parent
        shard.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{entry.job_hash}-", dir=shard))
        try:
            arrays: List[ArrayFile] = []

            def sink(a: np.ndarray) -> int:
                fname = f"a{len(arrays)}.npy"
                with open(tmp / fname, "wb") as f:
                    np.lib.format.write_array(f, a, allow_pickle=False)
                    self._flush(f)
                arrays.append(ArrayFile(file=fname, **npy.describe(a)))
                return len(arrays) - 1

            doc = FileEntryDoc(**EntryMeta.of(entry), result=encode(entry.result, sink),
                               arrays=arrays, error=entry.error, runtime_info=entry.runtime_info)
            with open(tmp / _ENTRY, "wb") as f:
                f.write(doc.model_dump_json().encode("utf-8"))
                self._flush(f)
            if self.fsync:
                _fsync_dir(tmp)
            self._install(tmp, target)
            if self.fsync:
                _fsync_dir(shard)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _flush(self, f: Any) -> None:
        if self.fsync:
            f.flush()
            os.fsync(f.fileno())

    def _install(self, tmp: Path, target: Path) -> None:
        """Rename the complete entry ``tmp`` to ``target``, moving an older entry aside."""
        last: Optional[OSError] = None
        for _ in range(8):
            try:
                os.rename(tmp, target)
                return
            except OSError as exc:
                # POSIX: ENOTEMPTY/EEXIST; Windows: access denied when the target exists
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EACCES,
                                     errno.EPERM):
                    raise
                last = exc
            self._move_aside(target)  # False when another writer moved it first: retry
        if not target.exists() and last is not None:
            raise last
        # every try lost to a concurrent writer of the same key: its whole entry stands
        logger.debug("job cache: concurrent writers of %s; kept the other writer's entry", target.name)

    def _move_aside(self, target: Path) -> bool:
        old = target.parent / f"{_OLD_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(target, old)
        except FileNotFoundError:
            return False
        # readers that opened the old folder keep reading it (open files and mappings
        # survive the unlink on POSIX)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:  # junk in the place of an entry
            old.unlink()
        return True

    def delete(self, job_hash: str) -> bool:
        target = self.entry_dir(job_hash)
        try:
            return self._move_aside(target)  # False when there is no entry
        except OSError as exc:
            raise self._cannot_delete(exc, f"the entry {job_hash}") from exc

    def _cannot_delete(self, exc: OSError, what: str) -> CacheError:
        return CacheError(f"cannot delete {what} of the {self.describe()}: {exc.strerror or exc}; "
                          "make the folder writable (not on a read-only file system, no immutable "
                          "flag, owned by this user) and run clear again")

    # ------------------------------------------------------------------ read
    def get(self, job_hash: str) -> Optional[CacheEntry]:
        self._check_hash(job_hash)
        target = os.path.join(self._root, job_hash[:2], job_hash)
        for _ in range(5):
            try:
                folder = _Folder(target)
            except FileNotFoundError:
                return None
            except OSError as exc:
                logger.warning("job cache entry %s in %s cannot be opened (%s); treating it as a miss",
                               job_hash, self.root, exc)
                return None
            try:
                return self._read(folder, job_hash)
            except Exception as exc:  # noqa: BLE001 - any damage to an entry is a miss
                if folder.still_at(target):  # the folder we read is still the entry: damaged
                    logger.warning("job cache entry %s in %s is unreadable (%s: %s); treating it "
                                   "as a miss (the next run of the job replaces it)", job_hash,
                                   self.root, type(exc).__name__, exc)
                    return None
                # replaced or removed while we read it: read whatever is there now
            finally:
                folder.close()
        return None  # replaced again and again by concurrent writers: a miss, nothing damaged

    def _read(self, folder: "_Folder", job_hash: str) -> CacheEntry:
        doc = FileEntryDoc.model_validate_json(folder.read_bytes(_ENTRY))
        if doc.job_hash != job_hash:
            raise _Unreadable(f"entry.json is for job {doc.job_hash}")
        loaded: dict = {}

        def source(ref: Any) -> np.ndarray:
            if type(ref) is not int or not 0 <= ref < len(doc.arrays):
                raise _Unreadable(f"bad array reference {ref!r}")
            if ref not in loaded:
                loaded[ref] = self._load_array(folder, doc.arrays[ref])
            return loaded[ref]

        return CacheEntry(**EntryMeta.of(doc), result=decode(doc.result, source),  # type: ignore[arg-type]
                          error=doc.error, runtime_info=doc.runtime_info)

    def _load_array(self, folder: "_Folder", meta: ArrayFile) -> np.ndarray:
        with folder.open(meta.file) as f:
            return npy.from_file(f, meta, os.fstat(f.fileno()).st_size, self.mmap_min_bytes)

    # ------------------------------------------------------------------ listing
    def _shard_entries(self) -> Iterator[Tuple[str, "os.DirEntry[str]"]]:
        """(shard name, item) of everything in the shard folders: entries, and leftovers of
        writers."""
        for shard in _scandir(self.root):
            if _SHARD_RE.match(shard.name) and shard.is_dir():
                for d in _scandir(Path(shard.path)):
                    yield shard.name, d

    def iter_hashes(self) -> Iterator[str]:
        for shard, d in self._shard_entries():
            if _HASH_RE.match(d.name) and d.name.startswith(shard) and d.is_dir():
                yield d.name

    def iter_summaries(self) -> Iterator[EntrySummary]:
        """Metadata and size of every entry, reading only the ``entry.json`` files."""
        for h in self.iter_hashes():
            yield self.summary(h)

    def summary(self, job_hash: str) -> EntrySummary:
        d = self.entry_dir(job_hash)
        size = 0
        mtime = 0.0
        for e in _scandir(d):
            try:
                st = e.stat()
            except OSError:
                continue
            size += st.st_size
            mtime = max(mtime, st.st_mtime)
        try:
            meta = EntryMeta.model_validate_json((d / _ENTRY).read_bytes())
            return EntrySummary(**meta.model_dump(), size_bytes=size)
        except Exception as exc:  # noqa: BLE001
            return EntrySummary.unreadable(job_hash, f"unreadable: {type(exc).__name__}",
                                           created_at=mtime, size_bytes=size)

    def clear(self, older_than: Optional[float] = None) -> int:
        if older_than is None:  # everything: no entry needs to be read
            doomed = list(self.iter_hashes())
        else:  # an unreadable entry counts as created when its files were last written
            doomed = [s.job_hash for s in self.iter_summaries() if s.created_at < older_than]
        n = 0
        failed: List[OSError] = []
        for h in doomed:
            try:
                n += self._move_aside(self.entry_dir(h))
            except OSError as exc:  # go on: report every entry that stays, once
                failed.append(exc)
        if failed:
            raise self._cannot_delete(failed[0], f"{len(failed)} of {len(doomed)} entries "
                                      f"(deleted {n})")
        self._sweep()
        return n

    def _sweep(self, min_age: float = _STALE_SECONDS) -> None:
        """Remove what writers that died left behind (temporary and moved-aside folders
        older than ``min_age`` seconds; younger ones may belong to a put in progress)."""
        now = time.time()
        for _shard, d in self._shard_entries():
            if d.name.startswith((_TMP_PREFIX, _OLD_PREFIX)):
                try:
                    if now - d.stat().st_mtime >= min_age:
                        shutil.rmtree(d.path, ignore_errors=True)
                except OSError:
                    continue


class _Folder:
    """An entry folder held open: its files are read from this very folder even if it is
    renamed away meanwhile (``dir_fd``); plain paths where the OS lacks ``dir_fd``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None
        if _DIR_FD:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        elif not os.path.isdir(path):
            raise FileNotFoundError(path)

    def open(self, name: str) -> Any:
        if "/" in name or "\\" in name or name.startswith("."):
            raise _Unreadable(f"bad file name {name!r}")
        if self.fd is not None:
            return os.fdopen(os.open(name, _O_READ, dir_fd=self.fd), "rb")
        return os.fdopen(os.open(os.path.join(self.path, name), _O_READ), "rb")

    def read_bytes(self, name: str) -> bytes:
        if self.fd is None:
            with self.open(name) as f:
                return f.read()
        fd = os.open(name, _O_READ, dir_fd=self.fd)
        try:  # unbuffered: one read of the whole file on the hit path
            chunks = [os.read(fd, max(os.fstat(fd).st_size, 1 << 12))]
            while chunks[-1]:
                chunks.append(os.read(fd, 1 << 16))
            return b"".join(chunks)
        finally:
            os.close(fd)

    def still_at(self, path: "str | Path") -> bool:
        """Whether ``path`` still names this folder (not replaced or removed)."""
        if self.fd is None:
            return os.path.isdir(path)
        try:
            a, b = os.stat(path), os.fstat(self.fd)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _scandir(path: Path) -> List["os.DirEntry[str]"]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _fsync_dir(path: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

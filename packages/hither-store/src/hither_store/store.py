"""The content-addressed store on any fsspec file system (entry point ``hither.stores:fsspec``)."""
from __future__ import annotations

import io
import logging
import os
import stat
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Event
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

from hither.content.folder import clone_fd
from hither.content.hashing import (CHUNK, copy_hashing, file_sha1, is_sha1_hex, known_file_sha1,
                                    parse_uri, remember_file_sha1, sha1_of_buffers, write_all)
from hither.content.layout import SIZE_HINT_MIN, blob_relpath, kind_of
from hither.plugins.cli import pip_install
from hither.plugins.interfaces import Store as StoreInterface

from .errors import BlobNotFoundError, StoreError, StoreIntegrityError
from .locations import ENV_CACHE, ENV_URL, default_cache_dir, default_store_url, env_storage_options
from .localdir import BadBlob, LocalBlobDir

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

logger = logging.getLogger("hither.store")

#: from this size on, a local put of in-memory data writes while it hashes and drops the
#: write if the content turns out to be stored already: new content costs max(hash, write).
#: (Not when the size hint says a blob of that size is stored: then it hashes first.)
_SPECULATE_MIN = SIZE_HINT_MIN
#: S3 allows at most 10,000 parts per upload: grow the part size for very large files
_MAX_PARTS = 9000

MakeParts = Callable[[], Iterable[memoryview]]


@dataclass(frozen=True)
class StoreStats:
    """How much a store holds: the number of blobs and their total size in bytes."""

    count: int
    bytes: int


def _reopen(url: str, storage_options: Dict[str, Any], cache_dir: Optional[str]) -> "Store":
    return Store(url, storage_options=storage_options, cache_dir=cache_dir)


class Store(StoreInterface):
    """Content-addressed storage of files and arrays on any fsspec file system.

    ``url`` is a local folder (default: ``$HITHER_STORE_URL``, else ``~/.cache/hither/store``),
    ``memory://name``, ``s3://bucket/prefix`` (``pip install 'hither-store[s3]'``) or any
    other fsspec URL; ``storage_options`` go to fsspec (default for ``$HITHER_STORE_URL``:
    the JSON in ``$HITHER_STORE_OPTIONS``). Content lives at ``<root>/sha1/ab/cd/<sha1>``
    and is addressed by ``sha1://<sha1>/<name>`` URIs. Example::

        import numpy as np
        from hither_store import Store

        store = Store("s3://my-bucket/hither",
                      storage_options={"client_kwargs": {"endpoint_url": "http://127.0.0.1:5555"}})
        uri = store.put_array(np.arange(10.0))       # 'sha1://…/array.npy'
        x = store.load_array(uri)                    # memory-mapped, read-only
        path = store.get_path(store.put_file("data.csv"))

    Content read from a non-local file system is downloaded into a local cache folder
    (``cache_dir``, default ``$HITHER_STORE_CACHE``, else ``~/.cache/hither/store-cache``) and
    checked against its sha1 first; content that does not match is never served. A local
    store hands out its own (read-only) blob files without copying them.
    """

    name = "fsspec"

    def __init__(self, url: Optional[str] = None, *, storage_options: Optional[Dict[str, Any]] = None,
                 cache_dir: Optional[str] = None) -> None:
        if url is None:
            url = default_store_url()
        if storage_options is None and url == os.environ.get(ENV_URL):
            storage_options = env_storage_options()
        if "://" not in url and "::" not in url:  # a folder: absolute, so pickles travel
            url = os.path.abspath(os.path.expanduser(url))
        self.url = url
        self.storage_options: Dict[str, Any] = dict(storage_options or {})
        self._cache_dir_arg = cache_dir
        self.fs, root = _connect(url, self.storage_options)
        from fsspec.implementations.local import LocalFileSystem

        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = root if self.is_local else root.rstrip("/")
        # local store: its folder; otherwise the local cache of verified copies
        if self.is_local:
            self._blobs = LocalBlobDir(root, f"the store {url}",
                                       f"use another store (--url / ${ENV_URL})")
        else:
            self._blobs = LocalBlobDir(cache_dir or default_cache_dir(),
                                       f"the local cache of the store {url}",
                                       f"point ${ENV_CACHE} (or cache_dir=) at a writable folder")

    # -- putting ---------------------------------------------------------------------------

    def put_file(self, path: "str | os.PathLike[str]", name: Optional[str] = None) -> str:
        """Store a file's content (read in chunks); return ``sha1://<sha1>/<name>``
        (``name`` defaults to the file's base name)."""
        path = os.fspath(path)
        name = os.path.basename(path) if name is None else name
        _check_name(name)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise StoreError(f"cannot store {path!r}: {exc.strerror}; give the path of an "
                             "existing file") from exc
        if stat.S_ISDIR(st.st_mode):
            raise StoreError(f"cannot store {path!r}: it is a directory; the store holds single "
                             "files (put each file, or an archive of the folder)")
        if self.is_local:
            digest = self._put_file_local(path, st)
        else:
            digest = self._put_file_remote(path, st)
        return f"sha1://{digest}/{name}"

    def put_bytes(self, data: bytes, name: str = "data") -> str:
        """Store bytes (or any contiguous buffer); return ``sha1://<sha1>/<name>``."""
        if isinstance(data, str):
            raise TypeError("put_bytes needs bytes, not str: encode the text first "
                            "(e.g. text.encode('utf-8'))")
        _check_name(name)
        view = memoryview(data)
        if not view.contiguous:
            raise StoreError("put_bytes needs a contiguous buffer; pass bytes(data) instead")
        view = view.cast("B") if view.ndim != 1 or view.format != "B" else view
        digest = self._put_parts(lambda: (view,), view.nbytes)
        return f"sha1://{digest}/{name}"

    def put_array(self, array: "np.ndarray", name: str = "array.npy") -> str:
        """Store an array as a .npy file (the bytes ``np.save`` writes, without a full copy in
        memory); return ``sha1://<sha1>/<name>``."""
        _check_name(name)
        make_parts, nbytes = _npy_parts(array)
        digest = self._put_parts(make_parts, nbytes)
        return f"sha1://{digest}/{name}"

    # -- getting ---------------------------------------------------------------------------

    def get_path(self, uri: str) -> str:
        """A local path holding the content of ``uri``: the blob itself for a local store, else
        a verified copy in the local cache (downloaded on first use). The file is read-only.

        A local blob (or cached copy) is re-hashed the first time this process reads it and
        again whenever its inode, size, mtime or ctime change; a symlink or any other file
        type at a blob's place is refused (``StoreIntegrityError``)."""
        digest, _name = parse_uri(uri)
        if self.is_local:
            try:
                path = self._blobs.checked_path(digest)
            except BadBlob as bad:
                raise StoreIntegrityError(
                    f"the store {self.url} holds {bad} at the place of {uri} "
                    f"({self._blobs.path(digest)}); it was not used. Remove it (hither-store --url "
                    f"{self.url} verify --remove-bad {uri}) and put the original content again") from None
            if path is None:
                raise self._not_found(uri)
            return path
        return self._fetch(digest, uri)

    def open(self, uri: str) -> IO[bytes]:
        """A binary file object reading the content of ``uri`` (verified first if remote)."""
        return open(self.get_path(uri), "rb")

    def load_array(self, uri: str, mmap: bool = True) -> "np.ndarray":
        """The array stored under ``uri``. With ``mmap`` (default) it is a read-only memory map
        of the local file, so nothing is copied and only the pages touched are read."""
        import numpy as np

        path = self.get_path(uri)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise StoreError(f"the content of {uri} is not a readable .npy array ({exc}); "
                             "load_array reads what put_array stored, use open() for other files") from exc

    def exists(self, uri: str) -> bool:
        """Whether the content of ``uri`` is in the store (the local cache does not count).
        Nothing is read: a local blob counts when a regular file is at its place."""
        digest, _name = parse_uri(uri)
        if self.is_local:
            return self._blobs.has(digest)
        return self._remote_has(digest)

    def verify(self, uri: str) -> bool:
        """Re-read and re-hash the stored content; True when it matches ``uri``.
        ``BlobNotFoundError`` when the store does not hold it."""
        digest, _name = parse_uri(uri)
        if self.is_local:
            return self._verify_local(digest, uri)
        try:
            with self.fs.open(self._key(digest), "rb", block_size=CHUNK) as f:
                got, _n = copy_hashing(f.readinto, None)
        except FileNotFoundError:
            raise self._not_found(uri) from None
        if got != digest:
            logger.warning("blob %s in %s is corrupt: its content hashes to %s", digest, self.url, got)
        return got == digest

    def _verify_local(self, digest: str, uri: str) -> bool:
        path = self._blobs.path(digest)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                logger.warning("blob %s in %s is a %s, not a file", digest, self.url, kind_of(st.st_mode))
                return False
            with open(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb", buffering=0) as f:
                got, _n = copy_hashing(f.readinto, None)
                if got == digest:
                    self._blobs.remember_verified(digest, f.fileno())
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(uri) from None
        if got != digest:
            logger.warning("blob %s in %s is corrupt: its content hashes to %s", digest, self.url, got)
        return got == digest

    def remove(self, uri: str) -> bool:
        """Delete the content of ``uri`` from the store (e.g. a corrupt blob before putting it
        again); True if it was there."""
        digest, _name = parse_uri(uri)
        if self.is_local:
            return self._blobs.remove(digest)
        if not self._remote_has(digest):  # S3 deletes a missing key without complaint
            return False
        key = self._key(digest)
        try:
            self.fs.rm(key)
        except FileNotFoundError:
            return False
        finally:
            self.fs.invalidate_cache(key)
        return True

    def iter_blobs(self) -> Iterator[Tuple[str, int]]:
        """(sha1, size in bytes) of every blob in the store."""
        if self.is_local:
            yield from self._blobs.iter_blobs()
            return
        top = f"{self.root}/sha1"
        self.fs.invalidate_cache(top)
        try:
            found = self.fs.find(top, detail=True)
        except FileNotFoundError:
            return
        for key, info in found.items():
            digest = key.rstrip("/").rsplit("/", 1)[-1]
            if is_sha1_hex(digest):
                yield digest, int(info.get("size") or 0)

    def stats(self) -> StoreStats:
        """The number of blobs and their total size."""
        count = total = 0
        for _digest, size in self.iter_blobs():
            count += 1
            total += size
        return StoreStats(count, total)

    @property
    def local_blobs(self) -> LocalBlobDir:
        """The folder of blobs on this machine: the store itself when it is local, else its
        local cache of verified copies of remote content (what ``prune`` reclaims)."""
        return self._blobs

    def describe(self) -> str:
        """Where the content lives, and for a non-local store where its local cache is."""
        return self.url if self.is_local else f"{self.url} (cache: {self._blobs.root})"

    def __repr__(self) -> str:
        return f"hither_store.Store({self.url!r})"

    def __reduce__(self):  # re-open by URL in another process (workers, job runners)
        return (_reopen, (self.url, self.storage_options, self._cache_dir_arg))

    # -- internals -------------------------------------------------------------------------

    def _key(self, digest: str) -> str:
        return f"{self.root}/{blob_relpath(digest)}"

    def _not_found(self, uri: str) -> BlobNotFoundError:
        return BlobNotFoundError(f"the store {self.url} holds no content for {uri}; put it there "
                                 "first (hither-store put FILE) or use the store it was put in "
                                 f"(--url / ${ENV_URL})")

    def _remote_has(self, digest: str) -> bool:
        key = self._key(digest)
        self.fs.invalidate_cache(key)  # another process may have stored it since we listed
        return bool(self.fs.exists(key))

    def _put_file_local(self, path: str, st: os.stat_result) -> str:
        regular = stat.S_ISREG(st.st_mode)
        size = st.st_size if regular else None
        known = known_file_sha1(path) or (_inode_digest(st) if regular else None)
        if known is None and size is not None and self._blobs.may_hold_size(size):
            # a blob of this size is stored: probably this content, so hash before copying
            with _open_source(path) as src:
                known, _n = copy_hashing(_reading(path, src.readinto), None, size)
        if known is not None and self._blobs.has(known, size):
            logger.debug("%s is already stored as %s", path, known)
            if _same_file(os.stat(path), st):
                remember_file_sha1(path, known, st)
                _remember_inode(st, known)
            return known
        with self._blobs.new_blob() as tmp, _open_source(path) as src:
            if regular and clone_fd(src.fileno(), tmp.file.fileno()):
                # copy-on-write clone (no data copied): hash the clone, which cannot change
                with open(tmp.path, "rb", buffering=0) as clone:
                    digest, n = copy_hashing(_reading(path, clone.readinto), None, st.st_size)
                tmp.nbytes = n
            else:
                # one read pass: the blob is named by the sha1 of exactly the bytes it holds
                digest, n = copy_hashing(_reading(path, src.readinto), tmp.write,
                                         st.st_size if regular else -1)
            if self._blobs.has(digest, n):
                logger.debug("%s is already stored as %s", path, digest)
            else:
                tmp.commit(digest)
                logger.debug("stored %s (%d bytes) as %s", path, n, digest)
        if regular:
            after = os.stat(path)
            if _same_file(after, st) and after.st_size == n:
                remember_file_sha1(path, digest, st)  # hi.File(path).uri need not re-read it
                _remember_inode(st, digest)
        return digest

    def _put_file_remote(self, path: str, st: os.stat_result) -> str:
        # hash first (memoized with hi.File) so content already stored is never uploaded
        digest = file_sha1(path)
        if self._remote_has(digest):
            logger.debug("%s is already stored as %s in %s", path, digest, self.url)
            return digest
        size = st.st_size if stat.S_ISREG(st.st_mode) else -1

        def upload(write: Callable[[memoryview], object]) -> None:
            with open(path, "rb", buffering=0) as src:
                got, _n = copy_hashing(src.readinto, write, size)
            if got != digest:
                raise StoreIntegrityError(
                    f"{path} changed while it was being stored (sha1 {digest} when hashed, {got} "
                    "when uploaded); nothing was stored: put it again once nothing writes to it")

        self._upload(digest, upload, size)
        logger.debug("uploaded %s (%d bytes) as %s to %s", path, max(size, 0), digest, self.url)
        return digest

    def _put_parts(self, make_parts: MakeParts, nbytes: int) -> str:
        """Store in-memory content given as byte buffers (``make_parts`` can be called twice)."""
        if self.is_local and nbytes >= _SPECULATE_MIN and not self._blobs.may_hold_size(nbytes):
            return self._put_parts_speculating(make_parts, nbytes)
        digest, _n = sha1_of_buffers(make_parts())
        if self.is_local:
            if not self._blobs.has(digest, nbytes):
                with self._blobs.new_blob() as tmp:
                    write_all(tmp.write, make_parts())
                    tmp.commit(digest)
        elif not self._remote_has(digest):
            self._upload(digest, lambda write: write_all(write, make_parts()), nbytes)
        return digest

    def _put_parts_speculating(self, make_parts: MakeParts, nbytes: int) -> str:
        stop = Event()
        # the pool is left first, so the writer has stopped before the temp file is removed
        with self._blobs.new_blob() as tmp, ThreadPoolExecutor(1, thread_name_prefix="hither-store-write") as pool:
            writing = pool.submit(write_all, tmp.write, make_parts(), CHUNK, stop.is_set)
            try:
                digest, _n = sha1_of_buffers(make_parts())
                stored = self._blobs.has(digest, nbytes)
            except BaseException:
                stop.set()
                raise
            if stored:
                stop.set()  # content already there: drop the copy, never rewrite the blob
            completed = writing.result()
            if completed and not stored:
                tmp.commit(digest)
        return digest

    def _upload(self, digest: str, produce: Callable[[Callable[[memoryview], object]], object],
                size: int) -> None:
        """Write content to a temporary key, then move it to its blob key (object stores make
        the blob visible whole, at the end of the move)."""
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}.part"
        block = max(CHUNK, -(-size // _MAX_PARTS)) if size > 0 else CHUNK
        try:
            with self.fs.open(tmp, "wb", block_size=block) as f:
                produce(f.write)
            self.fs.mv(tmp, self._key(digest))
        except BaseException:
            # the failed write may still have been committed (fsspec commits on close)
            try:
                self.fs.rm(tmp)
            except Exception:  # noqa: BLE001 - it may never have been created
                pass
            raise
        finally:
            self.fs.invalidate_cache(self._key(digest))

    def _fetch(self, digest: str, uri: str) -> str:
        """The local cache's copy of a remote blob, downloading and verifying it if absent."""
        try:
            cached = self._blobs.checked_path(digest)
        except BadBlob as bad:  # a cache: drop the bad copy and download it again
            logger.warning("the local cache %s held %s for %s; downloading it again",
                           self._blobs.root, bad, digest)
            self._blobs.remove(digest)
            cached = None
        if cached is not None:
            return cached
        key = self._key(digest)
        with self._blobs.new_blob() as tmp:
            try:
                src = self.fs.open(key, "rb", block_size=CHUNK)
            except FileNotFoundError:
                raise self._not_found(uri) from None
            with src:
                got, n = copy_hashing(src.readinto, tmp.write, getattr(src, "size", None) or -1)
            if got != digest:
                # leaving the block without commit deletes the download: it is never served
                raise StoreIntegrityError(
                    f"the content stored for {uri} in {self.url} (key {key}) is corrupt: it "
                    f"hashes to {got}; it was not used. Remove it (hither-store --url {self.url} "
                    f"verify --remove-bad {uri}) and put the original content again")
            path = tmp.commit(digest)
        logger.debug("downloaded %s (%d bytes) from %s", digest, n, self.url)
        return path


def _connect(url: str, options: Dict[str, Any]):
    """(fsspec file system, root path) for a store URL or a local folder."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        extra = f" ({pip_install('hither-store[s3]')})" if url.startswith(("s3://", "s3a://")) else ""
        raise StoreError(f"cannot open the store {url!r}: {exc}{extra}") from exc
    except (ValueError, TypeError) as exc:
        raise StoreError(f"cannot open the store {url!r}: {exc}; give a local folder or an fsspec "
                         "URL such as memory://name or s3://bucket/prefix, with valid "
                         "storage options") from exc


def _check_name(name: str) -> None:
    """Refuse a name that cannot be the file name at the end of a URI (and of ``get DEST/``)."""
    if not isinstance(name, str):
        raise StoreError(f"the name of stored content must be a str, not {type(name).__name__}")
    why = None
    if not name:
        why = "it is empty"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        why = "it holds a control character (NUL, newline, ...)"
    elif name in (".", "..") or "/" in name or "\\" in name:
        why = "it is not a plain file name (a path, '.' or '..')"
    else:
        try:
            if len(name.encode("utf-8")) > 255:
                why = "it is longer than 255 bytes (the limit of a file name)"
        except UnicodeEncodeError:
            why = "it is not valid Unicode text"
    if why is not None:
        raise StoreError(f"bad name {name!r} for stored content: {why}; give a plain file name "
                         "such as 'data.csv' (it becomes the last part of the sha1:// URI)")
    parse_uri(f"sha1://{'0' * 40}/{name}")  # the same rule URIs are read with


#: (dev, inode, size, mtime) of files this process stored -> their sha1: a hard link or a
#: renamed file is recognised without reading it
_inode_digests: Dict[Tuple[int, int, int, int], str] = {}
_inode_lock = threading.Lock()


def _inode_key(st: os.stat_result) -> Tuple[int, int, int, int]:
    # not the ctime: a hard link or a rename changes it. The same trust as hither's sha1 memo
    # by path: a rewrite with the same size and the mtime put back goes unnoticed
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _inode_digest(st: os.stat_result) -> Optional[str]:
    """The sha1 this process found for the file ``st`` describes, if unchanged since."""
    with _inode_lock:
        return _inode_digests.get(_inode_key(st))


def _remember_inode(st: os.stat_result, digest: str) -> None:
    with _inode_lock:
        _inode_digests[_inode_key(st)] = digest


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return _inode_key(a) == _inode_key(b)


def _open_source(path: str) -> io.FileIO:
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise StoreError(f"cannot read {path!r}: {exc.strerror or exc}; give the path of a "
                         "readable file") from exc


def _reading(path: str, readinto: Callable[[memoryview], Optional[int]]) -> Callable[[memoryview], Optional[int]]:
    """``readinto`` whose failures name the file being stored (not the store)."""
    def read(view: memoryview) -> Optional[int]:
        try:
            return readinto(view)
        except OSError as exc:
            raise StoreError(f"cannot read {path!r} while storing it: {exc.strerror or exc}; "
                             "nothing was stored") from exc
    return read


def _npy_parts(array: Any) -> Tuple[MakeParts, int]:
    """The .npy encoding of ``array`` as buffers, without copying a contiguous array."""
    import numpy as np
    from numpy.lib import format as npy

    if isinstance(array, np.ma.MaskedArray):
        raise StoreError("cannot store a masked array as .npy (the mask would be lost); store "
                         "its .data and its .mask as two arrays")
    arr = np.asarray(array)
    if arr.dtype.hasobject:
        raise StoreError(f"cannot store an array of dtype {arr.dtype} (Python objects) as .npy "
                         "without pickle; convert it to a numeric, bool or string dtype")
    header = _npy_header(arr, npy)
    if header is None or arr.dtype.itemsize == 0:  # rare layouts: let numpy encode it in memory
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        whole = buf.getbuffer()
        return (lambda: (whole,)), whole.nbytes
    head = memoryview(header)
    if arr.flags.c_contiguous or arr.flags.f_contiguous:
        # a Fortran-ordered array is stored in Fortran order: its bytes are those of arr.T
        data = (arr if arr.flags.c_contiguous else arr.T).reshape(-1).view(np.uint8).data
        return (lambda: (head, data)), head.nbytes + data.nbytes

    row_bytes = max(1, arr[0].nbytes if arr.ndim else arr.nbytes)
    rows = max(1, CHUNK // row_bytes)

    def blocks() -> Iterator[memoryview]:
        yield head
        for start in range(0, arr.shape[0], rows):  # bounded copies of a strided view
            yield np.ascontiguousarray(arr[start:start + rows]).reshape(-1).view(np.uint8).data

    return blocks, head.nbytes + arr.nbytes


def _npy_header(arr: Any, npy: Any) -> Optional[bytes]:
    """The header ``np.save`` writes for ``arr`` (format 1.0, or 2.0 when it is too long)."""
    meta = npy.header_data_from_array_1_0(arr)
    for write_header in (npy.write_array_header_1_0, npy.write_array_header_2_0):
        out = io.BytesIO()
        try:
            write_header(out, meta)
        except ValueError:  # too long for 1.0; non-latin-1 field names need numpy's 3.0
            continue
        return out.getvalue()
    return None

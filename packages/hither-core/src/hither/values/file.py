"""``hi.File``: a file passed to or returned from a hither function, addressed by content.

A File's content is fixed when it is made: ``hi.File(path)`` hashes the file and keeps a
copy (a copy-on-write clone where the file system can) in this machine's content store
(``hither.content.folder.file_store()``), so editing or deleting ``path`` afterwards never changes
what the File refers to.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Optional, Tuple, Union

from hither.errors import HitherError

# hither.content (the content store, hashing, the plugin registry behind stores) is imported
# where a File is made or resolved, not with ``import hither``: a job's ``import hither`` in a
# fresh interpreter (a container, a worker) pays ~100 modules less for it


def _display(path: Optional[str], uri: Optional[str]) -> str:
    return f"hi.File({path!r})" if path else f"hi.File.from_uri({uri!r})"


def _checked_source(path: str) -> os.stat_result:
    """The stat of the file ``hi.File(path)`` is made of; a clear error if it is not one."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"hi.File({path!r}): no such file (check the path; a relative path is taken from the "
            f"current folder {os.getcwd()}; for content already in the store use "
            "hi.File.from_uri('sha1://...'))") from None
    except OSError as exc:
        raise OSError(exc.errno, f"hi.File({path!r}): cannot read it: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(
            f"hi.File({path!r}) is a directory: a hi.File holds one file's content; pass a "
            "hi.File for each file (e.g. a list of them), or an archive of the folder")
    if not stat.S_ISREG(st.st_mode):
        raise HitherError(f"hi.File({path!r}) is not a regular file (a pipe, socket or device): "
                          "write its content to a file first")
    return st


class File:
    """A file for a hither job: ``hi.File("data.csv")`` or ``hi.File.from_uri("sha1://...")``.

    ``hi.File(path)`` fixes the content at creation: it hashes the file and keeps a copy in
    this machine's content store (``hither.content.folder.file_store()``: hither-store's local store,
    or hither-core's built-in content folder), a copy-on-write clone where the file system
    can. Its identity (job hash, cache, equality) is ``uri``, ``sha1://<sha1>/<name>``;
    editing or deleting ``path`` afterwards changes nothing about it. ``path`` stays the
    path it was made from (for display); ``resolve()`` / ``os.fspath()`` give a local file
    holding the File's content (the stored copy: read it, never write to it).

    As an argument it reaches the function as such a local path string (unless the
    function opts out with ``@hi.opts(no_resolve_input_files=True)``, then it gets the
    ``File``). As a result it comes back as a ``File``. Example::

        f = hi.File("data.csv")          # hashed and stored now
        job = count_lines.run(path=f)    # the job reads what data.csv held at hi.File()
    """

    __slots__ = ("_path", "_uri", "_name", "_local")
    _path: Optional[str]
    _uri: str
    _name: str
    _local: Optional[str]

    def __init__(self, path: Union[str, "os.PathLike[str]", "File", None] = None, *,
                 uri: Optional[str] = None) -> None:
        if isinstance(path, File):  # hi.File(f): the same File
            self._path, self._uri, self._name, self._local = path._path, path._uri, path._name, path._local
            return
        if path is None and uri is None:
            raise HitherError("hi.File needs a path or a uri")
        self._path = os.path.abspath(os.fspath(path)) if path is not None else None
        self._local = None
        if uri is not None:
            from hither.content.hashing import parse_uri

            # content known by its URI; ``path`` only names where it came from
            parse_uri(uri)
            self._uri = uri
            self._name = parse_uri(uri)[1] or (os.path.basename(self._path) if self._path else "")
            return
        assert self._path is not None
        self._name = os.path.basename(self._path)
        self._uri, self._local = _keep(self._path, self._name)

    @classmethod
    def from_uri(cls, uri: str) -> "File":
        """A File of content already in a store, by its ``sha1://<sha1>/<name>`` URI."""
        return cls(uri=uri)

    @classmethod
    def _stored(cls, uri: str, local: Optional[str], path: Optional[str] = None) -> "File":
        """A File of content the caller has just stored (``local`` holds it); no re-hashing."""
        from hither.content.hashing import parse_uri

        f = cls.__new__(cls)
        f._path, f._uri, f._local = path, uri, local
        f._name = parse_uri(uri)[1]
        return f

    @property
    def path(self) -> Optional[str]:
        """The local path this File was made from, if any (its content may have changed
        since: the File's content is at ``resolve()``)."""
        return self._path

    @property
    def name(self) -> str:
        return self._name

    @property
    def sha1(self) -> str:
        from hither.content.hashing import parse_uri

        return parse_uri(self.uri)[0]

    @property
    def uri(self) -> str:
        """``sha1://<hex>/<name>``: the File's identity, fixed when it was made."""
        return self._uri

    def resolve(self) -> str:
        """A local path holding this File's content: its stored copy on this machine (found
        in the content store, or fetched from ``hither.content.stores.default_store()``), else the
        original path while it still holds that content."""
        local = self._local
        if local is not None and os.path.isfile(local):
            return local
        from hither.content.folder import fetch, find_local
        from hither.content.hashing import file_sha1

        found = find_local(self._uri)
        if found is None and self._path is not None and os.path.isfile(self._path):
            try:
                if file_sha1(self._path) == self.sha1:
                    return self._path
            except OSError:
                pass
        if found is None:
            found = fetch(self._uri, _display(self._path, self._uri))
        self._local = found
        return found

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
        return _display(self._path, self._uri)

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        # pickles with its identity and stored copy: a worker on this machine reads that copy
        return (_rebuild_file, (self._path, self._uri, self._local))


def _rebuild_file(path: Optional[str], uri: str, local: Optional[str] = None) -> File:
    return File._stored(uri, local, path)


def _keep(path: str, name: str) -> Tuple[str, str]:
    """Store the content of ``path`` now: (its URI, the local path of the stored copy)."""
    from hither.content.folder import file_store, touch

    _checked_source(path)
    store = file_store()
    uri = store.put_file(path, name)
    local = store.get_path(uri)
    touch(local)
    return uri, local

"""hither-cache: job-cache backends for hither (``hi.JobCache``).

- ``FileCacheBackend``: entries as sharded folders of files (``hi.JobCache(path=...)``).
- ``MongoCacheBackend``: entries in MongoDB (``hi.JobCache(database=hi.Database(...))``;
  needs ``pip install 'hither-cache[mongo]'``).

hither finds both through the ``hither.caches`` entry points; import this package only to
construct a backend with non-default options::

    import hither as hi
    from hither_cache import MongoCacheBackend

    jc = hi.JobCache(backend=MongoCacheBackend(hi.Database(mongo_url="mongodb://db:27017"),
                                               retry_timeout=30))
"""
from __future__ import annotations

from .__about__ import __version__
from .errors import CacheError, CacheUnavailableError
from .file_backend import FileCacheBackend
from .mongo_backend import MongoCacheBackend

__all__ = ["__version__", "CacheError", "CacheUnavailableError", "FileCacheBackend",
           "MongoCacheBackend"]

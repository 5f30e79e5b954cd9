"""hither-store: hither's content-addressed store of files and arrays on any fsspec file system.

    from hither_store import Store

    store = Store()                      # $HITHER_STORE_URL, else ~/.cache/hither/store
    uri = store.put_file("data.csv")     # 'sha1://<40 hex>/data.csv'
    path = store.get_path(uri)

hither-core finds it through the ``hither.stores`` entry point ``fsspec``
(``hither.content.stores.default_store()``); ``hi.File(path)`` keeps the file's content in it (a
local store) when the File is made, and ``hi.File.resolve()`` fetches content from it.
"""
from __future__ import annotations

from .__about__ import __version__
from .errors import BlobNotFoundError, StoreError, StoreIntegrityError
from .store import Store, StoreStats

__all__ = ["__version__", "Store", "StoreStats", "StoreError", "BlobNotFoundError",
           "StoreIntegrityError"]

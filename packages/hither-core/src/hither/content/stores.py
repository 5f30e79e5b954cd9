"""Access to the configured content store (provided by the hither-store package).

``hi.File`` keeps content in ``hither.content.folder.file_store()``: this store when it is a
local folder, else hither-core's built-in content folder. ``default_store()`` follows
``$HITHER_STORE_URL`` (and ``$HITHER_STORE_OPTIONS``, ``$HITHER_STORE_CACHE``): a program
that changes them gets the store they name on its next use, each store opened once."""
from __future__ import annotations

import os
import threading
from typing import Dict, Optional, Tuple

from hither.plugins import registry
from hither.plugins.interfaces import Store

#: the environment variables the fsspec store reads when it is opened without arguments
STORE_ENV = ("HITHER_STORE_URL", "HITHER_STORE_OPTIONS", "HITHER_STORE_CACHE")

_lock = threading.Lock()
_pinned: Optional[Store] = None  # set by set_default_store: wins over the environment
_opened: Dict[Tuple[Optional[str], ...], Store] = {}  # one store per value of STORE_ENV


def default_store() -> Store:
    """The store at ``$HITHER_STORE_URL`` (or hither-store's default folder), opened once
    per value of the variables it reads; the one ``set_default_store`` gave, if any."""
    with _lock:
        if _pinned is not None:
            return _pinned
        key = tuple(os.environ.get(name) or None for name in STORE_ENV)
        store = _opened.get(key)
        if store is None:
            cls = registry.load("stores", "fsspec")
            store = _opened[key] = cls(key[0])
        return store


def set_default_store(store: Optional[Store]) -> None:
    """Use ``store`` for ``hi.File`` content (when it is a local folder), for fetching
    content a File refers to, and for moving data across machines (``None``: follow
    ``$HITHER_STORE_URL`` again, opening its store anew on next use). This process only:
    worker processes open the store at ``$HITHER_STORE_URL``."""
    global _pinned
    with _lock:
        _pinned = store
        if store is None:
            _opened.clear()

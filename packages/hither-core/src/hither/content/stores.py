"""Access to the configured content store (provided by the hither-store package).

``hi.File`` keeps content in ``hither.content.folder.file_store()``: this store when it is a
local folder, else hither-core's built-in content folder."""
from __future__ import annotations

import os
import threading
from typing import Optional

from hither.plugins import registry
from hither.plugins.interfaces import Store

_lock = threading.Lock()
_default: Optional[Store] = None


def default_store() -> Store:
    """The store at ``$HITHER_STORE_URL`` (or hither-store's default folder)."""
    global _default
    with _lock:
        if _default is None:
            cls = registry.load("stores", "fsspec")
            _default = cls(os.environ.get("HITHER_STORE_URL") or None)
        return _default


def set_default_store(store: Optional[Store]) -> None:
    """Use ``store`` for ``hi.File`` content (when it is a local folder), for fetching
    content a File refers to, and for moving data across machines (``None``: open the
    store at ``$HITHER_STORE_URL`` again on next use). This process only: worker processes
    open the store at ``$HITHER_STORE_URL``."""
    global _default
    with _lock:
        _default = store

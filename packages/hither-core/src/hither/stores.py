"""Access to the configured content store (provided by the hither-store package)."""
from __future__ import annotations

import os
import threading
from typing import Optional

from . import registry
from .interfaces import Store

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
    """Use ``store`` for ``hi.File.resolve()`` and for moving data across machines."""
    global _default
    with _lock:
        _default = store

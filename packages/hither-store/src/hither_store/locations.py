"""Where stores live by default (``$HITHER_STORE_URL``, the local cache) and their fsspec options.

The layout of content under a store's root is ``hither.content.layout``'s (``blob_relpath``)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from .errors import StoreError

#: the store URL (any fsspec URL or a local folder)
ENV_URL = "HITHER_STORE_URL"
#: JSON object of fsspec options for the store at ``$HITHER_STORE_URL``
ENV_OPTIONS = "HITHER_STORE_OPTIONS"
#: local folder holding verified copies of content read from non-local stores
ENV_CACHE = "HITHER_STORE_CACHE"


def _user_cache_dir() -> str:
    import platformdirs

    return platformdirs.user_cache_dir("hither", appauthor=False)


def default_store_url() -> str:
    """``$HITHER_STORE_URL``, else the folder ``store`` in the user cache (~/.cache/hither/store)."""
    return os.environ.get(ENV_URL) or os.path.join(_user_cache_dir(), "store")


def default_cache_dir() -> str:
    """``$HITHER_STORE_CACHE``, else the folder ``store-cache`` in the user cache."""
    return os.environ.get(ENV_CACHE) or os.path.join(_user_cache_dir(), "store-cache")


def env_storage_options() -> Optional[Dict[str, Any]]:
    """The options in ``$HITHER_STORE_OPTIONS``, or None when it is unset."""
    raw = os.environ.get(ENV_OPTIONS)
    if not raw:
        return None
    return parse_storage_options(raw, f"${ENV_OPTIONS}")


def parse_storage_options(raw: str, source: str) -> Dict[str, Any]:
    """The fsspec options in the JSON text ``raw`` (``source`` names where it came from)."""
    try:
        opts = json.loads(raw)
    except ValueError as exc:
        raise StoreError(f"{source} is not valid JSON ({exc}); set it to a JSON object "
                         'of fsspec options, e.g. {"client_kwargs": {"endpoint_url": "..."}}') from None
    if not isinstance(opts, dict):
        raise StoreError(f"{source} must be a JSON object of fsspec options, not {raw!r}")
    return opts

"""What both ends of the bus check and default alike, at construction: the resource id, the
shared secret, the store, and their numeric options (positive and finite)::

    rid, secret, store = endpoint("RemoteJobHandler", "resource1", None, None, None)
    poll = seconds("RemoteJobHandler", "poll_interval", 0.05)
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

from hither.errors import ConfigError
from hither.plugins.interfaces import Store

from .signing import Secret, load_secret


def endpoint(owner: str, compute_resource_id: Any, secret: Any, secret_file: Optional[str],
             store: Optional[Store]) -> Tuple[str, Secret, Store]:
    """The checked resource id, the shared secret (``load_secret``) and the store (the
    default store when ``None``) of a client or resource called ``owner``."""
    if not compute_resource_id or not isinstance(compute_resource_id, str):
        raise ConfigError(f"{owner}(compute_resource_id=...) needs a non-empty name, "
                          f"got {compute_resource_id!r}")
    loaded = load_secret(secret, secret_file)
    if store is None:
        from hither.content.stores import default_store

        store = default_store()
    return compute_resource_id, loaded, store


def seconds(owner: str, name: str, value: Any) -> float:
    """``value`` as a positive, finite number of seconds, or a ConfigError naming it."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)  # numpy numbers too
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{owner}({name}=...) needs a positive, finite number of seconds, got {value!r}")
    return float(value)


def byte_count(owner: str, name: str, value: Any) -> Optional[int]:
    """``value`` as None or a number of bytes (an int >= 0), or a ConfigError naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{owner}({name}=...) needs None or a number of bytes (an integer >= 0), "
                          f"got {value!r}")
    return value

"""Results that stay where they were made (``hither.values.refs``): a value held as content-store
URIs and read only when someone asks for it.

A job that ran on another machine leaves its large arrays and files in the content store.
Unless ``hi.Config(download_results=True)``, its result comes back as a ``StoredResult``:
the transport's encoded value (small parts inline, large ones as ``sha1://`` URIs) plus
the store. ``job.get_result()`` materialises it (arrays loaded, files fetched and verified
by the store); a downstream job on a handler that reads the same store is handed the
``StoredResult`` itself, so the data goes from job to job without passing the client.
A ``StoredResult`` hashes by its encoded content (the URIs are content hashes), so a job
hash over it is stable; it differs from the hash of the same value held in memory.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from hither.values.file import File
from hither.runtime import WireVisitor, decode_value

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.interfaces import Store

_UNSET: Any = object()


def walk_encoded(value: Any, fn: Callable[[Dict[str, Any]], Any]) -> Any:
    """Apply ``fn`` to every ndarray/file node of a value in the wire format, wherever it
    is nested (inside tuples, dicts, pairs, or the array form of a structured scalar); a
    dict of the value that has a ``"_hither"`` key of its own is data, never a node."""
    return _NodeWalk(fn).visit(value)


class _NodeWalk(WireVisitor):
    """``walk_encoded``: the wire form copied, its ndarray and file nodes replaced."""

    def __init__(self, fn: Callable[[Dict[str, Any]], Any]) -> None:
        self.fn = fn

    def visit_tagged(self, tag: Any, d: Dict[str, Any], path: Any) -> Any:
        if tag == "ndarray" or tag == "file":
            return self.fn(d)
        return super().visit_tagged(tag, d, path)


def has_store_refs(encoded: Any) -> bool:
    """Whether an encoded value refers to content in a store (arrays or files by URI)."""
    found = [False]

    def see(node: Dict[str, Any]) -> Dict[str, Any]:
        if node.get("uri"):
            found[0] = True
        return node

    walk_encoded(encoded, see)
    return found[0]


class StoredResult:
    """A job's result held in a content store: ``encoded`` is the value in the wire format
    with arrays as ``{"uri": ...}`` or ``{"inline": <base64 .npy>}`` and files as URIs."""

    #: marks stored results for the value checks (which cannot import this module)
    _hither_ref = True

    def __init__(self, encoded: Any, store: "Store") -> None:
        self.encoded = encoded
        self.store = store
        self._value: Any = _UNSET
        self._lock = threading.Lock()
        self._digest: Optional[str] = None

    @property
    def digest(self) -> str:
        """sha1 of the canonical encoded form: the identity used in job hashes."""
        if self._digest is None:
            canon = json.dumps(self.encoded, sort_keys=True, separators=(",", ":"))
            self._digest = hashlib.sha1(canon.encode()).hexdigest()
        return self._digest

    def materialize(self) -> Any:
        """The value itself (read once, then kept): arrays loaded from the store, files
        fetched into local paths (both verified by the store)."""
        with self._lock:
            if self._value is _UNSET:
                self._value = self._read()
            return self._value

    def _read(self) -> Any:
        import numpy as np

        arrays: Dict[str, Any] = {}

        def localise(node: Dict[str, Any]) -> Dict[str, Any]:
            if node["_hither"] == "ndarray":
                key = f"a{len(arrays)}"
                if node.get("inline") is not None:
                    arrays[key] = np.load(io.BytesIO(base64.b64decode(node["inline"])), allow_pickle=False)
                else:
                    arrays[key] = self.store.load_array(node["uri"])
                return {"_hither": "ndarray", "ref": key}
            return {"_hither": "file", "uri": node["uri"], "local": self.store.get_path(node["uri"])}

        local = walk_encoded(self.encoded, localise)
        return decode_value(local, arrays.__getitem__, lambda d: File._stored(d["uri"], d["local"]))

    def __hither_wire__(self) -> Any:
        """The encoded form, spliced as is into a job document for the same store."""
        return self.encoded

    def __repr__(self) -> str:
        return f"<hither StoredResult {self.digest[:12]} in {self.store!r}>"


def is_stored(value: Any) -> bool:
    return getattr(type(value), "_hither_ref", False) is True

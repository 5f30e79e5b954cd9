"""Encoding hither values for storage and transport (arrays handed to a sink): ``hither.runtime``'s
wire format (the value grammar's walks), with ``hi.File`` rebuilt on decoding.

Cache backends and stores use these so arrays never travel as base64 inside JSON::

    data = encode(value, array_sink=lambda a: save_npy(a))   # JSON-able
    value = decode(data, array_source=lambda ref: load_npy(ref))
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from hither.values.file import File
from hither.runtime import decode_value, encode_value


def _file_to_wire(f: File) -> Dict[str, Any]:
    return {"_hither": "file", "uri": f.uri, "path": f.path}


def _file_from_wire(d: Dict[str, Any]) -> File:
    from hither.values.file import _rebuild_file

    return _rebuild_file(d.get("path"), d["uri"])


def encode(value: Any, array_sink: Callable[[Any], Any]) -> Any:
    """JSON-able form of a hither value; ``array_sink(ndarray)`` returns a JSON-able ref."""
    return encode_value(value, array_sink, _file_to_wire)


def decode(data: Any, array_source: Callable[[Any], Any]) -> Any:
    """The value ``encode`` produced, with ``hi.File`` objects rebuilt; exactly that value:
    ``ValueError`` when a value's class (an Enum, say) cannot be imported here, rather than
    a plain value in its place."""
    return decode_value(data, array_source, _file_from_wire, exact=True)

"""The JSON wire format of hither values, written on the value grammar (``grammar``):
``encode_value`` / ``decode_value``.

Stdlib only, Python 3.8 syntax; numpy is imported only when a numpy value is decoded.

Tagged forms (key ``"_hither"``): str (hex of UTF-8 with lone surrogates), tuple, ndarray
(ref), npscalar (dtype and hex bytes; a void scalar as a 0-d "array"), npstr / npbytes
(numpy str_ / bytes_: the value), typed (an int/float/str subclass such as an Enum: "type"
module:qualname and the plain "value"), file (uri, path), float (non-finite, as repr; a NaN
also as "hex" of its bytes), dict (a dict that has a "_hither" key), pairs (a dict with a
key that UTF-8 cannot encode: [key, value] items).
"""
from __future__ import annotations

import math
import struct
import sys

from .grammar import KIND_BY_CLASS, TAG, Visitor, WireVisitor, kind_of

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Callable, Dict, List, Optional

_pack_double = struct.Struct("<d").pack


def type_name(t: type) -> str:
    """``module:qualname`` of a class (a ``__main__`` script loaded by the runner as
    ``__hither_main__`` is ``__main__`` again)."""
    mod = t.__module__
    return "%s:%s" % ("__main__" if mod == "__hither_main__" else mod, t.__qualname__)


def encode_str(s: str) -> Any:
    """``s``, or a tagged form when it holds lone surrogates (e.g. an undecodable file name
    from ``os.listdir``), which UTF-8 JSON cannot carry."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return {TAG: "str", "hex": s.encode("utf-8", "surrogatepass").hex()}


class _Encode(Visitor):
    """``encode_value``: one method per kind of value."""

    __slots__ = ("array_sink", "file_encoder")

    def __init__(self, array_sink: Callable[[Any], Any],
                 file_encoder: Optional[Callable[[Any], Any]]) -> None:
        self.array_sink = array_sink
        self.file_encoder = file_encoder

    def keep(self, v: Any, path: Any) -> Any:
        return v

    visit_none = visit_bool = visit_int = keep

    def visit_str(self, v: str, path: Any) -> Any:
        return encode_str(v)

    def visit_float(self, v: float, path: Any) -> Any:
        if math.isfinite(v):
            return v
        if math.isnan(v):  # its sign and payload bits too: a NaN is not just "nan"
            return {TAG: "float", "repr": repr(v), "hex": _pack_double(v).hex()}
        return {TAG: "float", "repr": repr(v)}

    def visit_tuple(self, v: Any, path: Any) -> Any:
        table, kinds = self._table, KIND_BY_CLASS
        items: List[Any] = []
        for i, x in enumerate(v):
            kind = kinds.get(type(x))
            items.append(table[kind_of(x) if kind is None else kind](self, x, (path, i)))
        return {TAG: "tuple", "items": items}

    def visit_dict(self, v: Dict[Any, Any], path: Any) -> Any:
        table, kinds = self._table, KIND_BY_CLASS
        if any(type(k) is str and type(encode_str(k)) is not str for k in v):
            # a key UTF-8 JSON cannot hold: the dict as a list of (key, value) pairs
            pairs: List[Any] = []
            for k, x in v.items():
                kind = kinds.get(type(x))
                pairs.append([encode_str(k), table[kind_of(x) if kind is None else kind](self, x, (path, k))])
            return {TAG: "pairs", "items": pairs}
        items: Dict[Any, Any] = {}
        for k, x in v.items():
            kind = kinds.get(type(x))
            items[k] = table[kind_of(x) if kind is None else kind](self, x, (path, k))
        return {TAG: "dict", "items": items} if TAG in v else items

    def visit_ndarray(self, v: Any, path: Any) -> Any:
        return {TAG: "ndarray", "ref": self.array_sink(v)}

    def visit_npscalar(self, v: Any, path: Any) -> Any:
        np = sys.modules["numpy"]
        if isinstance(v, np.str_):  # the Python value: numpy's buffer drops trailing NULs
            return {TAG: "npstr", "value": encode_str(str.__str__(v))}
        if isinstance(v, np.bytes_):
            return {TAG: "npbytes", "hex": bytes(v).hex()}
        if isinstance(v, np.void):  # its dtype (fields, offsets) travels as an array's does
            return {TAG: "npscalar", "array": self.visit(np.asarray(v), path)}
        return {TAG: "npscalar", "dtype": v.dtype.str, "hex": v.tobytes().hex()}

    def visit_ref(self, v: Any, path: Any) -> Any:  # already in the wire format (a stored result)
        return type(v).__hither_wire__(v)

    def visit_file(self, v: Any, path: Any) -> Any:  # hither.File or the runner's stand-in
        if self.file_encoder is not None:
            return self.file_encoder(v)
        return {TAG: "file", "uri": v.uri, "path": getattr(v, "path", None)}

    def visit_typed(self, v: Any, path: Any) -> Any:  # the class, and the plain value
        if isinstance(v, int):
            return {TAG: "typed", "type": type_name(type(v)), "value": int.__int__(v)}
        if isinstance(v, float):
            return {TAG: "typed", "type": type_name(type(v)), "value": self.visit_float(float.__float__(v), path)}
        return {TAG: "typed", "type": type_name(type(v)), "value": encode_str(str.__str__(v))}

    def visit_other(self, v: Any, path: Any) -> Any:  # a Job too: never sent as a value
        t = type(v)
        raise TypeError("cannot encode a value of type %s.%s for hither" % (t.__module__, t.__qualname__))

    visit_job = leaf = visit_other  # a Job, or a kind this walk does not know


def encode_value(v: Any, array_sink: Callable[[Any], Any],
                 file_encoder: Optional[Callable[[Any], Any]] = None) -> Any:
    """A JSON-able form of a hither value. ``array_sink(ndarray) -> ref`` stores an array;
    ``file_encoder(file) -> dict`` describes a File (default: its uri and path)."""
    return _Encode(array_sink, file_encoder).visit(v)


def resolve_class(name: str) -> Optional[type]:
    """The class ``module:qualname`` names (a ``__main__`` class: from the script the
    runner loaded, else this process's ``__main__``); None when it cannot be found."""
    import importlib

    mod_name, _, qualname = name.partition(":")
    candidates = ["__hither_main__", "__main__"] if mod_name == "__main__" else [mod_name]
    for m in candidates:
        mod = sys.modules.get(m)
        if mod is None and m != "__hither_main__":
            try:
                mod = importlib.import_module(m)
            except Exception:  # noqa: BLE001 - not importable here
                mod = None
        obj: Any = mod
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type):
            return obj
    return None


class _Decode(WireVisitor):
    """``decode_value``: one method per tag (``tag_<name>``); lists and dicts copied; an
    unknown tag is an error."""

    __slots__ = ("array_source", "file_decoder", "exact")

    def __init__(self, array_source: Optional[Callable[[Any], Any]],
                 file_decoder: Optional[Callable[[Dict[str, Any]], Any]], exact: bool) -> None:
        self.array_source = array_source
        self.file_decoder = file_decoder
        self.exact = exact

    def visit_tagged(self, tag: Any, d: Dict[str, Any], path: Any) -> Any:  # no tag_<tag>
        raise ValueError("unknown hither wire tag %r" % (tag,))

    def tag_tuple(self, d: Dict[str, Any], path: Any) -> Any:
        visit = self.visit
        out: List[Any] = []
        for i, x in enumerate(d["items"]):
            out.append(visit(x, (path, i)))
        return tuple(out)

    def tag_pairs(self, d: Dict[str, Any], path: Any) -> Any:
        visit = self.visit
        out: Dict[Any, Any] = {}
        for k, x in d["items"]:
            out[_PLAIN.visit(k)] = visit(x, (path, k))
        return out

    def tag_dict(self, d: Dict[str, Any], path: Any) -> Any:
        return self.visit_dict(d["items"], path)

    def tag_str(self, d: Dict[str, Any], path: Any) -> str:
        return bytes.fromhex(d["hex"]).decode("utf-8", "surrogatepass")

    def tag_ndarray(self, d: Dict[str, Any], path: Any) -> Any:
        return self.array_source(d["ref"])  # type: ignore[misc]

    def tag_npscalar(self, d: Dict[str, Any], path: Any) -> Any:
        import numpy as np

        if "array" in d:  # a 0-d array: copied out of any mapping, then its item
            return np.array(self.visit(d["array"], path))[()]
        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=np.dtype(d["dtype"]))[0]

    def tag_npstr(self, d: Dict[str, Any], path: Any) -> Any:
        import numpy as np

        return np.str_(_PLAIN.visit(d["value"]))

    def tag_npbytes(self, d: Dict[str, Any], path: Any) -> Any:
        import numpy as np

        return np.bytes_(bytes.fromhex(d["hex"]))

    def tag_float(self, d: Dict[str, Any], path: Any) -> float:
        if "hex" in d:
            return float(struct.unpack("<d", bytes.fromhex(d["hex"]))[0])
        return float(d["repr"])

    def tag_file(self, d: Dict[str, Any], path: Any) -> Any:
        return self.file_decoder(d) if self.file_decoder is not None else d

    def tag_typed(self, d: Dict[str, Any], path: Any) -> Any:
        value = d["value"]
        if type(value) is dict:
            value = _PLAIN.visit(value)
        base = type(value)
        cls = resolve_class(d["type"])
        if cls is None or base not in (int, float, str) or not issubclass(cls, base):
            if self.exact:
                raise ValueError("a value of class %s cannot be rebuilt here: the class is not "
                                 "importable in this process (or is not a %s subclass)"
                                 % (d["type"].replace(":", "."), base.__name__))
            return value  # where the class does not exist (e.g. in a container): the plain value
        return cls(value)  # an Enum looks its member up by value


#: decodes the parts that hold no array or file (dict keys, the value of a typed or npstr)
_PLAIN = _Decode(None, None, False)


def decode_value(d: Any, array_source: Optional[Callable[[Any], Any]],
                 file_decoder: Optional[Callable[[Dict[str, Any]], Any]] = None,
                 exact: bool = False) -> Any:
    """Inverse of ``encode_value``: ``array_source(ref) -> ndarray``; ``file_decoder(dict)``.

    A value of an int/float/str subclass comes back as an instance of its class when the
    class can be imported here; otherwise ``exact=True`` raises ``ValueError`` and
    ``exact=False`` (the runner, which may lack the user's modules) gives the plain value.
    """
    return _Decode(array_source, file_decoder, exact).visit(d)

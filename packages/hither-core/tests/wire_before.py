"""The wire format's encoder and decoder as they were before they were rewritten on the value
grammar (hither.runtime.wire), kept verbatim as the oracle that test_core_wire_next.py holds
the new ones to, byte for byte.
"""
import math
import struct
import sys

TAG = "_hither"


# ------------------------------------------------------------------ wire format of values
# ------------------------------------------------------------------ wire format of values
def _type_name(t):
    mod = t.__module__
    return "%s:%s" % ("__main__" if mod == "__hither_main__" else mod, t.__qualname__)


def encode_value(v, array_sink, file_encoder=None):
    """A JSON-able form of a hither value. ``array_sink(ndarray) -> ref`` stores an array;
    ``file_encoder(file) -> dict`` describes a File (default: its uri and path).

    Tagged forms (key ``"_hither"``): str (hex of UTF-8 with lone surrogates), tuple,
    ndarray (ref), npscalar (dtype and hex bytes;
    a void scalar as a 0-d "array"), npstr / npbytes (numpy str_ / bytes_: the value),
    typed (an int/float/str subclass such as an Enum: "type" module:qualname and the plain
    "value"), file (uri, path), float (non-finite, as repr; a NaN also as "hex" of its bytes), dict (a dict that has a
    "_hither" key), pairs (a dict with a key that UTF-8 cannot encode: [key, value]
    items).
    """
    t = type(v)
    if t is str:
        return _encode_str(v)
    if v is None or t is bool or t is int:
        return v
    if t is float:
        if math.isfinite(v):
            return v
        if math.isnan(v):  # its sign and payload bits too: a NaN is not just "nan"
            return {TAG: "float", "repr": repr(v), "hex": struct.pack("<d", v).hex()}
        return {TAG: "float", "repr": repr(v)}
    if t is list:
        return [encode_value(x, array_sink, file_encoder) for x in v]
    if t is tuple:
        return {TAG: "tuple", "items": [encode_value(x, array_sink, file_encoder) for x in v]}
    if t is dict:
        if any(type(k) is str and type(_encode_str(k)) is not str for k in v):
            # a key UTF-8 JSON cannot hold: the dict as a list of (key, value) pairs
            return {TAG: "pairs", "items": [[_encode_str(k), encode_value(x, array_sink, file_encoder)]
                                            for k, x in v.items()]}
        items = {k: encode_value(x, array_sink, file_encoder) for k, x in v.items()}
        return {TAG: "dict", "items": items} if TAG in v else items
    np = sys.modules.get("numpy")  # a numpy value means numpy is loaded
    if np is not None and isinstance(v, np.ndarray):
        return {TAG: "ndarray", "ref": array_sink(v)}
    if np is not None and isinstance(v, np.generic):
        if isinstance(v, np.str_):  # the Python value: numpy's buffer drops trailing NULs
            return {TAG: "npstr", "value": _encode_str(str.__str__(v))}
        if isinstance(v, np.bytes_):
            return {TAG: "npbytes", "hex": bytes(v).hex()}
        if isinstance(v, np.void):  # its dtype (fields, offsets) travels as an array's does
            return {TAG: "npscalar", "array": encode_value(np.asarray(v), array_sink, file_encoder)}
        return {TAG: "npscalar", "dtype": v.dtype.str, "hex": v.tobytes().hex()}
    wire = getattr(t, "__hither_wire__", None)
    if wire is not None:  # a value already in the wire format (a result held in a store)
        return wire(v)
    if hasattr(v, "__fspath__") and hasattr(v, "uri"):  # hither.File or the runner's stand-in
        if file_encoder is not None:
            return file_encoder(v)
        return {TAG: "file", "uri": v.uri, "path": getattr(v, "path", None)}
    if isinstance(v, int):  # subclasses (bool cannot be subclassed): keep the class
        return {TAG: "typed", "type": _type_name(t), "value": int.__int__(v)}
    if isinstance(v, float):
        return {TAG: "typed", "type": _type_name(t),
                "value": encode_value(float.__float__(v), array_sink, file_encoder)}
    if isinstance(v, str):
        return {TAG: "typed", "type": _type_name(t), "value": _encode_str(str.__str__(v))}
    raise TypeError("cannot encode a value of type %s.%s for hither" % (t.__module__, t.__qualname__))


def _encode_str(s):
    """``s``, or a tagged form when it holds lone surrogates (e.g. an undecodable file name
    from ``os.listdir``), which UTF-8 JSON cannot carry."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return {TAG: "str", "hex": s.encode("utf-8", "surrogatepass").hex()}


def _resolve_class(name):
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
        obj = mod
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type):
            return obj
    return None


def _decode_typed(d, exact):
    value = d["value"]
    if type(value) is dict:
        value = decode_value(value, None)
    base = type(value)
    cls = _resolve_class(d["type"])
    if cls is None or base not in (int, float, str) or not issubclass(cls, base):
        if exact:
            raise ValueError("a value of class %s cannot be rebuilt here: the class is not "
                             "importable in this process (or is not a %s subclass)"
                             % (d["type"].replace(":", "."), base.__name__))
        return value  # where the class does not exist (e.g. in a container): the plain value
    return cls(value)  # an Enum looks its member up by value


def decode_value(d, array_source, file_decoder=None, exact=False):
    """Inverse of ``encode_value``: ``array_source(ref) -> ndarray``; ``file_decoder(dict)``.

    A value of an int/float/str subclass comes back as an instance of its class when the
    class can be imported here; otherwise ``exact=True`` raises ``ValueError`` and
    ``exact=False`` (the runner, which may lack the user's modules) gives the plain value.
    """
    t = type(d)
    if t is list:
        return [decode_value(x, array_source, file_decoder, exact) for x in d]
    if t is not dict:
        return d
    tag = d.get(TAG)
    if tag is None:
        return {k: decode_value(x, array_source, file_decoder, exact) for k, x in d.items()}
    if tag == "tuple":
        return tuple(decode_value(x, array_source, file_decoder, exact) for x in d["items"])
    if tag == "pairs":
        return {decode_value(k, None): decode_value(x, array_source, file_decoder, exact)
                for k, x in d["items"]}
    if tag == "dict":
        return {k: decode_value(x, array_source, file_decoder, exact) for k, x in d["items"].items()}
    if tag == "str":
        return bytes.fromhex(d["hex"]).decode("utf-8", "surrogatepass")
    if tag == "ndarray":
        return array_source(d["ref"])
    if tag == "npscalar":
        import numpy as np

        if "array" in d:  # a 0-d array: copied out of any mapping, then its item
            return np.array(decode_value(d["array"], array_source, file_decoder, exact))[()]
        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=np.dtype(d["dtype"]))[0]
    if tag == "npstr":
        import numpy as np

        return np.str_(decode_value(d["value"], None))
    if tag == "npbytes":
        import numpy as np

        return np.bytes_(bytes.fromhex(d["hex"]))
    if tag == "typed":
        return _decode_typed(d, exact)
    if tag == "float":
        if "hex" in d:
            return struct.unpack("<d", bytes.fromhex(d["hex"]))[0]
        return float(d["repr"])
    if tag == "file":
        return file_decoder(d) if file_decoder is not None else d
    raise ValueError("unknown hither wire tag %r" % (tag,))


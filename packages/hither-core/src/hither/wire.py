"""The JSON wire format of hither values, shared by hither-core and the job runner.

Stdlib only, Python >= 3.8 syntax, numpy imported only when an array is met: the runner
ships this file into containers and onto clusters. Tagged forms (``"_hither"`` key):

- ``{"_hither": "tuple", "items": [...]}``
- ``{"_hither": "ndarray", "ref": <sink's reference>}`` (bytes stored by the sink as .npy)
- ``{"_hither": "npscalar", "dtype": "<f4", "hex": "..."}``
- ``{"_hither": "file", "uri": "sha1://...", "path": "..."}``
- ``{"_hither": "float", "repr": "nan"}`` for non-finite floats (strict JSON)
- ``{"_hither": "dict", "items": {...}}`` for a dict that itself has a ``"_hither"`` key
"""
import math

TAG = "_hither"


def encode_value(v, array_sink, file_encoder=None):
    """A JSON-able form of ``v``. ``array_sink(ndarray) -> ref`` stores arrays (refs are
    JSON-able); ``file_encoder(file) -> dict`` describes a File object (default: its
    ``uri``/``path`` attributes)."""
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        return v if math.isfinite(v) else {TAG: "float", "repr": repr(v)}
    if t is list:
        return [encode_value(x, array_sink, file_encoder) for x in v]
    if t is tuple:
        return {TAG: "tuple", "items": [encode_value(x, array_sink, file_encoder) for x in v]}
    if t is dict:
        items = {k: encode_value(x, array_sink, file_encoder) for k, x in v.items()}
        return {TAG: "dict", "items": items} if TAG in v else items
    mod = t.__module__
    if mod == "numpy":
        import numpy as np

        if isinstance(v, np.ndarray):
            return {TAG: "ndarray", "ref": array_sink(v)}
        if isinstance(v, np.generic):
            return {TAG: "npscalar", "dtype": v.dtype.str, "hex": v.tobytes().hex()}
    if hasattr(v, "__fspath__") and hasattr(v, "uri"):  # hither.File (or the runner's)
        if file_encoder is not None:
            return file_encoder(v)
        return {TAG: "file", "uri": v.uri, "path": getattr(v, "path", None)}
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return encode_value(float(v), array_sink, file_encoder)
    if isinstance(v, str):
        return str(v)
    raise TypeError("cannot encode a value of type %s.%s for hither" % (mod, t.__qualname__))


def decode_value(d, array_source, file_decoder=None):
    """Inverse of ``encode_value``. ``array_source(ref) -> ndarray``; ``file_decoder(dict)``
    rebuilds a File (default: the dict itself)."""
    t = type(d)
    if t is list:
        return [decode_value(x, array_source, file_decoder) for x in d]
    if t is not dict:
        return d
    tag = d.get(TAG)
    if tag is None:
        return {k: decode_value(x, array_source, file_decoder) for k, x in d.items()}
    if tag == "tuple":
        return tuple(decode_value(x, array_source, file_decoder) for x in d["items"])
    if tag == "dict":
        return {k: decode_value(x, array_source, file_decoder) for k, x in d["items"].items()}
    if tag == "ndarray":
        return array_source(d["ref"])
    if tag == "npscalar":
        import numpy as np

        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=np.dtype(d["dtype"]))[0]
    if tag == "float":
        return float(d["repr"])
    if tag == "file":
        return file_decoder(d) if file_decoder is not None else d
    raise ValueError("unknown hither wire tag %r" % (tag,))

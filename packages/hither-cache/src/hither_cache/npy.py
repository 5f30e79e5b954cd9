"""Reading ``.npy`` data by the metadata kept in the entry, without parsing the header.

numpy's header parser goes through ``ast.literal_eval``, which is slower than needed on
the hit path and, on some CPython 3.11 releases, fails under concurrent threads
("AST constructor recursion depth mismatch"). The entry records dtype, shape and order;
the header is still written in full, so every ``.npy`` stays readable by ``np.load``.
"""
from __future__ import annotations

from typing import IO, Any, Dict, Optional

import numpy as np

_MAGIC = b"\x93NUMPY"


class NpyError(ValueError):
    """The ``.npy`` data does not match its recorded description."""


def describe(a: np.ndarray) -> Dict[str, Any]:
    """JSON-able description of ``a`` as ``np.lib.format.write_array`` lays it out."""
    return {"dtype": np.lib.format.dtype_to_descr(a.dtype), "shape": list(a.shape),
            # the same rule write_array uses to choose Fortran order
            "fortran_order": bool(a.flags.f_contiguous and not a.flags.c_contiguous),
            "nbytes": int(a.nbytes)}


def _tuples(descr: Any) -> Any:
    """A descr back from JSON: lists of fields become lists of tuples, shapes tuples."""
    if not isinstance(descr, list):
        return descr
    fields = []
    for field in descr:
        parts = [_tuples(p) if isinstance(p, list) and p and isinstance(p[0], list)
                 else tuple(p) if isinstance(p, list) else p for p in field]
        fields.append(tuple(parts))
    return fields


def dtype_of(descr: Any) -> np.dtype:
    dtype = np.lib.format.descr_to_dtype(_tuples(descr))
    if dtype.hasobject:
        raise NpyError("the array holds Python objects")
    return dtype


def data_offset(head: bytes) -> int:
    """Where the data starts, from the first 12 bytes of a ``.npy``."""
    if len(head) < 12 or head[:6] != _MAGIC:
        raise NpyError("not .npy data")
    major = head[6]
    if major == 1:
        return 10 + int.from_bytes(head[8:10], "little")
    if major in (2, 3):
        return 12 + int.from_bytes(head[8:12], "little")
    raise NpyError(f".npy format version {major} is not supported")


def _layout(meta: Any) -> tuple:
    dtype = dtype_of(meta.dtype)
    shape = tuple(int(n) for n in meta.shape)
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize != meta.nbytes:
        raise NpyError(f"{count} items of {dtype} are not {meta.nbytes} bytes")
    return dtype, shape, count, "F" if meta.fortran_order else "C"


def from_bytes(buf: bytes, meta: Any) -> np.ndarray:
    """A (writable) array from ``.npy`` bytes described by ``meta``."""
    dtype, shape, count, order = _layout(meta)
    offset = data_offset(buf[:12])
    if len(buf) != offset + meta.nbytes:
        raise NpyError(f".npy data has {len(buf) - offset} bytes, expected {meta.nbytes}")
    if count == 0:
        return np.empty(shape, dtype=dtype, order=order)
    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order=order).copy(order="K")


def from_file(f: IO[bytes], meta: Any, size: int, mmap_min_bytes: Optional[int]) -> np.ndarray:
    """An array from the open ``.npy`` file ``f`` of ``size`` bytes: memory-mapped
    (copy-on-write) when at least ``mmap_min_bytes``, else read."""
    dtype, shape, count, order = _layout(meta)
    offset = data_offset(f.read(12))
    if size != offset + meta.nbytes:
        raise NpyError(f".npy file has {size - offset} data bytes, expected {meta.nbytes}")
    if count == 0:
        return np.empty(shape, dtype=dtype, order=order)
    if mmap_min_bytes is None or meta.nbytes < mmap_min_bytes:
        f.seek(offset)
        return np.fromfile(f, dtype=dtype, count=count).reshape(shape, order=order)
    # pages load on use; writes stay private to this process, never reach the file
    mm = np.memmap(f, dtype=dtype, mode="c", offset=offset, shape=shape, order=order)
    return mm.view(np.ndarray)  # a plain array; the mapping lives on through .base

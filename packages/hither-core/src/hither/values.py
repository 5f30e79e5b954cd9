"""Hither-allowed values: validation (with the argument path in errors), the jobs nested in
arguments, substitution of their results, and the canonical job hash.

Allowed, nested anywhere: None, bool, int, float, str, numpy arrays (not object dtype),
numpy scalars, list, tuple (kept distinct from list), dict with str keys, ``hi.File`` and
``Job`` (a pipeline dependency; arguments only).
"""
from __future__ import annotations

import hashlib
import os
import struct
import sys
from typing import Any, Callable, List

from .file import File

#: a ``hither.job.Job`` (jobs sit above this module in hither's layers, so they are
#: recognised by the ``_hither_job`` marker of their class, not by importing them)
Job = Any

_SCALARS = (str, int, float, bool, type(None))
_HASH_CHUNK = 64 * 1024 * 1024


class _JobMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return getattr(type(obj), "_hither_job", False) is True


class _AnyJob(metaclass=_JobMeta):
    """``isinstance(v, _AnyJob)``: whether ``v`` is a hither Job."""


def _job_type() -> type:
    return _AnyJob


def scan(value: Any, path: str, allow_jobs: bool = True) -> List["Job"]:
    """Validate ``value``; return the Jobs nested in it. ``TypeError`` names the path."""
    jobs: List["Job"] = []
    _scan(value, path, jobs, allow_jobs, _job_type())
    return jobs


def _scan(v: Any, path: str, jobs: list, allow_jobs: bool, job_type: type) -> None:
    t = type(v)
    np = sys.modules.get("numpy")  # no numpy loaded: no value can be an array
    if t in _SCALARS:
        return
    if t is list or t is tuple:
        for i, item in enumerate(v):
            _scan(item, f"{path}[{i}]", jobs, allow_jobs, job_type)
        return
    if t is dict:
        for k, item in v.items():
            if type(k) is not str:
                raise TypeError(f"{path} has a key {k!r} of type {type(k).__name__}: hither "
                                "dicts need str keys (convert the keys with str())")
            _scan(item, f"{path}[{k!r}]", jobs, allow_jobs, job_type)
        return
    if np is not None and isinstance(v, np.ndarray):
        if type(v) is not np.ndarray and not isinstance(v, np.memmap):
            # a masked array or matrix carries meaning beyond its data buffer
            raise TypeError(f"{path} is a {t.__module__}.{t.__qualname__}, a numpy array subclass "
                            "hither cannot carry faithfully; pass np.asarray(...) (and a mask "
                            "as an array of its own)")
        if v.dtype.hasobject:
            raise TypeError(f"{path} is a numpy array of dtype {v.dtype}: object arrays are not "
                            "allowed (use a numeric dtype, or a list)")
        return
    if np is not None and isinstance(v, np.generic):
        if v.dtype.hasobject:
            raise TypeError(f"{path} is a numpy object scalar: not allowed")
        return
    if isinstance(v, File):
        if v._uri is None and not os.path.exists(v.path or ""):
            raise FileNotFoundError(f"{path} is hi.File({v.path!r}), but that file does not exist "
                                    "(check the path, or pass hi.File.from_uri(...) for stored content)")
        return
    if getattr(t, "_hither_ref", False) is True:  # a hither.refs.StoredResult
        return
    if isinstance(v, job_type):
        if not allow_jobs:
            raise TypeError(f"{path} is a hither Job: a function cannot return a Job "
                            "(return its result, or run the job from the caller)")
        jobs.append(v)
        return
    if isinstance(v, _SCALARS):  # subclasses of str/int/float (e.g. IntEnum, np.float64)
        return
    raise TypeError(f"{path} has type {t.__module__}.{t.__qualname__}, which hither cannot pass "
                    "to or from a job; allowed: None, bool, int, float, str, numpy arrays and "
                    "scalars, list, tuple, dict with str keys, hi.File, and Job")


def substitute(value: Any, result_of: Callable[["Job"], Any]) -> Any:
    """A copy of ``value`` with every Job replaced by ``result_of(job)``."""
    job_type = _job_type()

    def sub(v: Any) -> Any:
        t = type(v)
        if t is list:
            return [sub(x) for x in v]
        if t is tuple:
            return tuple(sub(x) for x in v)
        if t is dict:
            return {k: sub(x) for k, x in v.items()}
        if isinstance(v, job_type):
            return result_of(v)
        return v

    return sub(value)


def map_files(value: Any, fn: Callable[[File], Any]) -> Any:
    """A copy of ``value`` with every ``hi.File`` replaced by ``fn(file)``."""
    t = type(value)
    if t is list:
        return [map_files(x, fn) for x in value]
    if t is tuple:
        return tuple(map_files(x, fn) for x in value)
    if t is dict:
        return {k: map_files(x, fn) for k, x in value.items()}
    if isinstance(value, File):
        return fn(value)
    return value


def prepare_kwargs(kwargs: dict, no_resolve_input_files: bool) -> dict:
    """Arguments as the function sees them: each ``hi.File`` becomes a local path string."""
    if no_resolve_input_files:
        return kwargs
    return {k: map_files(v, File.resolve) for k, v in kwargs.items()}


def has_files(value: Any) -> bool:
    t = type(value)
    if t is list or t is tuple:
        return any(has_files(x) for x in value)
    if t is dict:
        return any(has_files(x) for x in value.values())
    return isinstance(value, File)


# ---------------------------------------------------------------- canonical hashing
def update_hash(h: "hashlib._Hash", v: Any) -> None:
    """Feed a canonical, type-tagged encoding of ``v`` into ``h``.

    Dict order does not matter; list and tuple differ; arrays are hashed by dtype, shape and
    bytes straight from their buffer (no copy when C-contiguous, bounded chunks otherwise);
    Files by content; Jobs (not yet resolved) by their own hash.
    """
    t = type(v)
    if v is None:
        h.update(b"N")
    elif t is bool:
        h.update(b"T" if v else b"F")
    elif t is int:
        s = str(v).encode()
        h.update(b"i%d:" % len(s) + s)
    elif t is float:
        h.update(b"f" + struct.pack("<d", v))
    elif t is str:
        b = v.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b) + b)
    elif t is list or t is tuple:
        h.update((b"L%d:" if t is list else b"U%d:") % len(v))
        for x in v:
            update_hash(h, x)
    elif t is dict:
        h.update(b"D%d:" % len(v))
        for k in sorted(v):
            kb = k.encode("utf-8", "surrogatepass")
            h.update(b"%d:" % len(kb) + kb)
            update_hash(h, v[k])
    elif _is_array(v):
        _hash_array(h, v)
    elif t.__module__ == "numpy":
        d = repr(v.dtype.descr if v.dtype.fields else v.dtype.str).encode()
        raw = v.tobytes()
        h.update(b"g%d:" % len(d) + d + raw)
    elif isinstance(v, File):
        h.update(b"P" + v.sha1.encode())
    elif isinstance(v, _job_type()):
        h.update(b"J" + v.job_hash.encode())
    elif getattr(t, "_hither_ref", False) is True:  # a result held in a store
        h.update(b"R" + v.digest.encode())
    elif isinstance(v, bool):
        h.update(b"T" if v else b"F")
    elif isinstance(v, int):
        update_hash(h, int(v))
    elif isinstance(v, float):
        update_hash(h, float(v))
    elif isinstance(v, str):
        update_hash(h, str(v))
    else:  # scan() rejects these before hashing; keep the error precise anyway
        raise TypeError(f"cannot hash a value of type {t.__qualname__}")


def _is_array(v: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(v, np.ndarray)


def _hash_array(h: "hashlib._Hash", a: Any) -> None:
    import numpy as np

    d = repr(a.dtype.descr if a.dtype.fields else a.dtype.str).encode()
    shape = ",".join(map(str, a.shape)).encode()
    h.update(b"A%d:" % len(d) + d + b"(" + shape + b")")
    if a.size == 0:
        return
    if a.flags.c_contiguous:
        h.update(memoryview(a).cast("B"))  # hashlib reads the buffer in place, GIL released
        return
    # non-contiguous: hash C-ordered slabs along the first axis, bounded in size
    row_bytes = max(1, a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)))
    step = max(1, _HASH_CHUNK // row_bytes)
    for i in range(0, a.shape[0], step):
        h.update(memoryview(np.ascontiguousarray(a[i:i + step])).cast("B"))


def job_hash(name: str, version: str, kwargs: dict) -> str:
    """sha1 over the canonical encoding of (function name, version, arguments)."""
    h = hashlib.sha1(b"hither-job-v1\0")
    update_hash(h, name)
    update_hash(h, version)
    update_hash(h, kwargs)
    return h.hexdigest()

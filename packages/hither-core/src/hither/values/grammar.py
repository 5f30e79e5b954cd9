"""Hither-allowed values: validation (with the argument path in errors), the jobs nested in
arguments, substitution of their results, and the canonical job hash: each a walk written on
the one value grammar of ``hither.runtime.grammar`` (one method per kind of value).

Allowed, nested anywhere: None, bool, int, float, str, numpy arrays (not object dtype),
numpy scalars, list, tuple (kept distinct from list), dict with str keys, ``hi.File`` and
``Job`` (a pipeline dependency; arguments only).
"""
from __future__ import annotations

import hashlib
import os
import struct
import sys
from typing import Any, Callable, Iterator, List, Optional, Set, Tuple

from hither.runtime import KIND_BY_CLASS, NDARRAY, Visitor, format_path, kind_of
from hither.values.file import File

#: a ``hither.jobs.job.Job`` (jobs sit above this module in hither's layers, so they are
#: recognised by the ``_hither_job`` marker of their class, not by importing them)
Job = Any

#: an argument path: its root's name, or ``(parent path, key)`` (see ``hither.runtime.grammar``)
Path = Any

_HASH_CHUNK = 64 * 1024 * 1024
_pack_double = struct.Struct("<d").pack


#: the exact classes every walk accepts as they are (JSON scalars): checked without a walk,
#: since they are most arguments and results (subclasses, e.g. an IntEnum, take the walk)
_PLAIN = frozenset({int, float, str, bool, type(None)})


def scan(value: Any, path: str, allow_jobs: bool = True) -> List["Job"]:
    """Validate ``value``; return the Jobs nested in it. ``TypeError`` names the path."""
    if type(value) in _PLAIN:
        return []
    s = _Scan(allow_jobs)
    s.visit(value, path)
    return s.jobs


#: containers nested deeper than this are refused (well below Python's recursion limit)
MAX_DEPTH = 500


class _Scan(Visitor):
    """``scan``: every kind checked, the Jobs collected, cycles and deep nesting refused."""

    __slots__ = ("jobs", "allow_jobs", "active")

    def __init__(self, allow_jobs: bool) -> None:
        self.jobs: List["Job"] = []
        self.allow_jobs = allow_jobs
        self.active: Set[int] = set()  # ids of the containers being walked (a cycle test)

    def accept(self, v: Any, path: Path) -> None:
        return None

    visit_none = visit_bool = visit_int = visit_float = visit_str = visit_ref = accept

    def _enter(self, v: Any, path: Path) -> None:
        if len(self.active) >= MAX_DEPTH:
            text = format_path(path)
            short = text if len(text) < 120 else f"{text[:60]}...{text[-30:]}"
            raise TypeError(f"{short} is nested more than {MAX_DEPTH} levels deep: hither cannot "
                            "check, hash or send it; flatten it")
        if id(v) in self.active:
            raise TypeError(f"{format_path(path)} contains itself (a cycle): hither values must "
                            "be trees; pass a copy without the cycle")
        self.active.add(id(v))

    def visit_list(self, v: Any, path: Path) -> None:
        self._enter(v, path)
        table, kinds = self._table, KIND_BY_CLASS
        for i, item in enumerate(v):
            kind = kinds.get(type(item))
            table[kind_of(item) if kind is None else kind](self, item, (path, i))
        self.active.discard(id(v))

    visit_tuple = visit_list

    def visit_dict(self, v: Any, path: Path) -> None:
        self._enter(v, path)
        table, kinds = self._table, KIND_BY_CLASS
        for k, item in v.items():
            if type(k) is not str:
                raise TypeError(f"{format_path(path)} has a key {k!r} of type {type(k).__name__}: "
                                "hither dicts need str keys (convert the keys with str())")
            kind = kinds.get(type(item))
            table[kind_of(item) if kind is None else kind](self, item, (path, k))
        self.active.discard(id(v))

    def visit_ndarray(self, v: Any, path: Path) -> None:
        np = sys.modules["numpy"]
        if type(v) is not np.ndarray and not isinstance(v, np.memmap):
            # a masked array or matrix carries meaning beyond its data buffer
            t = type(v)
            raise TypeError(f"{format_path(path)} is a {t.__module__}.{t.__qualname__}, a numpy "
                            "array subclass hither cannot carry faithfully; pass np.asarray(...) "
                            "(and a mask as an array of its own)")
        if v.dtype.hasobject:
            raise TypeError(f"{format_path(path)} is a numpy array of dtype {v.dtype}: object "
                            "arrays are not allowed (use a numeric dtype, or a list)")
        _check_dtype(v.dtype, path)

    def visit_npscalar(self, v: Any, path: Path) -> None:
        if v.dtype.hasobject:
            raise TypeError(f"{format_path(path)} is a numpy object scalar: not allowed")
        _check_dtype(v.dtype, path)

    def visit_file(self, v: Any, path: Path) -> None:
        if not isinstance(v, File):  # file-like to the runner, but not a hi.File
            return self.visit_other(v, path)
        if v._uri is None and not os.path.exists(v.path or ""):
            raise FileNotFoundError(f"{format_path(path)} is hi.File({v.path!r}), but that file "
                                    "does not exist (check the path, or pass "
                                    "hi.File.from_uri(...) for stored content)")
        return None

    def visit_job(self, v: Any, path: Path) -> None:
        if not self.allow_jobs:
            raise TypeError(f"{format_path(path)} is a hither Job: a function cannot return a Job "
                            "(return its result, or run the job from the caller)")
        self.jobs.append(v)

    def visit_typed(self, v: Any, path: Path) -> None:  # IntEnum, (str, Enum), ...
        _check_subclass(v, format_path(path))

    def visit_other(self, v: Any, path: Path) -> None:
        t = type(v)
        raise TypeError(f"{format_path(path)} has type {t.__module__}.{t.__qualname__}, which "
                        "hither cannot pass to or from a job; allowed: None, bool, int, float, "
                        "str, numpy arrays and scalars, list, tuple, dict with str keys, hi.File, "
                        "and Job")

    leaf = visit_other  # a kind this walk does not know


def _check_dtype(dt: Any, path: Path) -> None:
    """Refuse a structured dtype that ``.npy`` (hence the cache and job directories) cannot
    describe: overlapping or out-of-order fields."""
    if dt.names is not None:
        try:
            dt.descr  # noqa: B018 - reading it raises for fields .npy cannot describe
        except ValueError:
            raise TypeError(f"{format_path(path)} has a structured dtype with overlapping or "
                            f"out-of-order fields ({dt}), which hither cannot store faithfully; "
                            "pass numpy.lib.recfunctions.repack_fields(a) (fields in offset "
                            "order)") from None


class _Substitute(Visitor):
    """``substitute``: containers copied, each Job replaced by its result."""

    __slots__ = ("result_of",)

    def __init__(self, result_of: Callable[["Job"], Any]) -> None:
        self.result_of = result_of

    def visit_job(self, v: Any, path: Path) -> Any:
        return self.result_of(v)


def substitute(value: Any, result_of: Callable[["Job"], Any]) -> Any:
    """A copy of ``value`` with every Job replaced by ``result_of(job)``."""
    return _Substitute(result_of).visit(value)


#: writeable arrays up to this many bytes are copied at ``.run()`` (see ``snapshot``)
SNAPSHOT_MAX_BYTES = int(os.environ.get("HITHER_SNAPSHOT_MAX_BYTES", 16 * 1024 * 1024))


class _Snapshot(Visitor):
    """``snapshot``: containers copied, small writeable arrays copied, the rest kept."""

    def visit_ndarray(self, v: Any, path: Path) -> Any:
        if v.nbytes <= SNAPSHOT_MAX_BYTES and _writable_memory(v):
            return sys.modules["numpy"].array(v, copy=True, order="K", subok=False)
        return v


_SNAPSHOT = _Snapshot()


def snapshot(value: Any) -> Any:
    """``value`` as it is now, for a job that may read it later (when its input jobs end, or
    when its container or cluster job starts): lists, tuples and dicts are copied at every
    depth, so changing them after ``.run()`` never changes the job.

    A numpy array is copied when its memory can still be written (it, or an array it is a
    view of, is writeable) and it holds at most ``SNAPSHOT_MAX_BYTES`` (16 MiB, set by
    ``$HITHER_SNAPSHOT_MAX_BYTES``; such a copy costs a few ms). A larger writeable array is
    passed by reference rather than doubled in memory: do not modify it until the job has
    ended, or pass a read-only array (``a.setflags(write=False)`` on an array that owns its
    memory), which is never copied. Everything else (numbers, strings, numpy scalars,
    ``hi.File``, ``Job``) is immutable and kept as is."""
    if type(value) in _PLAIN:
        return value
    return _SNAPSHOT.visit(value)


def _writable_memory(a: Any) -> bool:
    """Whether ``a``'s data can change: it or any array it is a view of is writeable."""
    while kind_of(a) == NDARRAY:
        if a.flags.writeable:
            return True
        a = a.base
    return False


class _MapFiles(Visitor):
    """``map_files``: containers copied, each ``hi.File`` replaced by ``fn(file)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[File], Any]) -> None:
        self.fn = fn

    def visit_file(self, v: Any, path: Path) -> Any:
        return self.fn(v) if isinstance(v, File) else v


def map_files(value: Any, fn: Callable[[File], Any]) -> Any:
    """A copy of ``value`` with every ``hi.File`` replaced by ``fn(file)``."""
    if type(value) in _PLAIN:
        return value
    return _MapFiles(fn).visit(value)


def prepare_kwargs(kwargs: dict, no_resolve_input_files: bool) -> dict:
    """Arguments as the function sees them: each ``hi.File`` becomes a local path string."""
    if no_resolve_input_files:
        return kwargs
    return {k: map_files(v, File.resolve) for k, v in kwargs.items()}


class _HasFiles(Visitor):
    """``has_files``: whether a ``hi.File`` is nested anywhere (stops at the first)."""

    def leaf(self, v: Any, path: Path) -> bool:
        return False

    def visit_list(self, v: Any, path: Path) -> bool:
        table, kinds = self._table, KIND_BY_CLASS
        for x in (v.values() if type(v) is dict else v):
            kind = kinds.get(type(x))
            if table[kind_of(x) if kind is None else kind](self, x, path):
                return True
        return False

    visit_tuple = visit_dict = visit_list

    def visit_file(self, v: Any, path: Path) -> bool:
        return isinstance(v, File)


_HAS_FILES = _HasFiles()


def has_files(value: Any) -> bool:
    """Whether a ``hi.File`` is nested anywhere in ``value``."""
    return type(value) not in _PLAIN and bool(_HAS_FILES.visit(value))


# ---------------------------------------------------------------- canonical hashing
# One tag byte per kind, lengths before variable-size parts, so no two values of different
# value, type, dtype, shape or nesting can produce the same byte stream. Bumped whenever the
# encoding changes, so entries made under an older encoding can never be mistaken for new.
HASH_DOMAIN = b"hither-job-v2\0"


def update_hash(h: "hashlib._Hash", v: Any) -> None:
    """Feed a canonical, type-tagged encoding of ``v`` into ``h``.

    Exact: the encoding follows the value *and* its type. Dict order does not matter; list
    and tuple differ; an ``int``/``float``/``str`` subclass (``IntEnum``, a ``(str, Enum)``)
    is tagged with its class (module and qualified name) besides its value; numpy scalars
    and arrays by dtype, shape and their meaningful bytes in C order (no padding bytes, so
    equal values always hash alike, whatever their memory layout); Files by content; Jobs
    (not yet resolved) by their own hash. No Python ``hash()``: stable across processes.
    """
    _Hash(h).visit(v)


class _Hash(Visitor):
    """``update_hash``: the canonical encoding of each kind fed into ``self.h``."""

    __slots__ = ("h", "update")

    def __init__(self, h: "hashlib._Hash") -> None:
        self.h = h
        self.update = h.update

    def visit_none(self, v: None, path: Path) -> None:
        self.update(b"N")

    def visit_bool(self, v: bool, path: Path) -> None:
        self.update(b"T" if v else b"F")

    def visit_int(self, v: int, path: Path) -> None:
        s = str(v).encode()
        self.update(b"i%d:" % len(s) + s)

    def visit_float(self, v: float, path: Path) -> None:
        self.update(b"f" + _pack_double(v))

    def visit_str(self, v: str, path: Path) -> None:
        b = v.encode("utf-8", "surrogatepass")
        self.update(b"s%d:" % len(b) + b)

    def visit_list(self, v: Any, path: Path) -> None:
        self.update((b"L%d:" if type(v) is list else b"U%d:") % len(v))
        table, kinds = self._table, KIND_BY_CLASS
        for item in v:
            kind = kinds.get(type(item))
            table[kind_of(item) if kind is None else kind](self, item, path)

    visit_tuple = visit_list

    def visit_dict(self, v: dict, path: Path) -> None:  # items in key order; no paths (never named)
        update, table, kinds = self.update, self._table, KIND_BY_CLASS
        update(b"D%d:" % len(v))
        for k in sorted(v):
            kb = k.encode("utf-8", "surrogatepass")
            update(b"%d:" % len(kb) + kb)
            x = v[k]
            kind = kinds.get(type(x))
            table[kind_of(x) if kind is None else kind](self, x, path)

    def visit_ndarray(self, v: Any, path: Path) -> None:
        _hash_array(self.h, v)

    def visit_npscalar(self, v: Any, path: Path) -> None:
        _hash_np_scalar(self.h, v)

    def visit_file(self, v: Any, path: Path) -> None:
        if not isinstance(v, File):
            return self.visit_other(v, path)
        self.h.update(b"P" + v.sha1.encode())
        return None

    def visit_job(self, v: Any, path: Path) -> None:
        self.h.update(b"J" + v.job_hash.encode())

    def visit_ref(self, v: Any, path: Path) -> None:  # a result held in a store
        self.h.update(b"R" + v.digest.encode())

    def visit_typed(self, v: Any, path: Path) -> None:
        _check_subclass(v, "a value")
        name = type_name(type(v)).encode("utf-8", "surrogatepass")
        self.h.update(b"X%d:" % len(name) + name)
        self.visit(base_value(v), path)

    def visit_other(self, v: Any, path: Path) -> None:  # scan() rejects these before hashing
        t = type(v)
        raise TypeError(f"cannot hash a value of type {t.__module__}.{t.__qualname__}")

    leaf = visit_other  # a kind this walk does not know


def _subclass_base(v: Any) -> Optional[type]:
    """``int``, ``float`` or ``str`` when ``v`` is an instance of a subclass of it."""
    for base in (int, float, str):
        if isinstance(v, base):
            return base
    return None


def base_value(v: Any) -> Any:
    """The plain ``int``/``float``/``str`` value of an instance of a subclass of one (the
    base class's own conversion: an overridden ``__str__``, as ``(str, Enum)`` has, is not
    the value)."""
    if isinstance(v, int):
        return int.__int__(v)
    if isinstance(v, float):
        return float.__float__(v)
    return str.__str__(v)


def type_name(t: type) -> str:
    """``module:qualname`` of a class, as the wire format names it (the runner loads a
    ``__main__`` script as ``__hither_main__``: that is ``__main__`` again)."""
    mod = t.__module__
    return f"{'__main__' if mod == '__hither_main__' else mod}:{t.__qualname__}"


def _check_subclass(v: Any, path: str) -> None:
    """Refuse an ``int``/``float``/``str`` subclass instance that its class and plain value
    do not describe faithfully (hash and wire format carry exactly those two)."""
    t = type(v)
    if "<locals>" in t.__qualname__:
        raise TypeError(f"{path} is a {t.__qualname__}, a class defined inside a function: hither "
                        "names a value's class by module and name, which does not tell such "
                        "classes apart; define the class at module level (or pass "
                        f"{_subclass_base(v).__name__}(value))")  # type: ignore[union-attr]
    import enum

    if isinstance(v, enum.Enum):  # a member is its class and value (attributes come with the class)
        return
    state = sorted(getattr(v, "__dict__", None) or ())
    state += [n for c in t.__mro__ for n in _slot_names(c) if hasattr(v, n)]
    if state:
        raise TypeError(f"{path} is a {t.__module__}.{t.__qualname__} whose instance carries "
                        f"attributes ({', '.join(state)}) besides its "
                        f"{_subclass_base(v).__name__} value; hither cannot hash or carry those: "  # type: ignore[union-attr]
                        "pass the plain value, or a dict of the parts")


def _slot_names(c: type) -> List[str]:
    slots = c.__dict__.get("__slots__", ())
    names = [slots] if isinstance(slots, str) else list(slots)
    return [n for n in names if n not in ("__dict__", "__weakref__")]


def _hash_np_scalar(h: "hashlib._Hash", v: Any) -> None:
    import numpy as np

    if isinstance(v, (np.str_, np.bytes_)):
        # the value is the Python str/bytes (a numpy buffer would drop trailing NULs)
        b = str.__str__(v).encode("utf-8", "surrogatepass") if isinstance(v, np.str_) else bytes(v)
        h.update((b"gU%d:" if isinstance(v, np.str_) else b"gS%d:") % len(b) + b)
        return
    dt = v.dtype
    if dt.names is None and dt.kind != "V" and _meaningful_ranges(dt) == [(0, dt.itemsize)]:
        # the same bytes _hash_array gives for the 0-d array, without making one
        d = _dtype_tag(dt).encode()
        h.update(b"g%d:" % len(d) + d + b"()" + v.tobytes())
        return
    _hash_array(h, np.asarray(v), tag=b"g")


def _dtype_tag(dt: Any) -> str:
    """Exact text of a dtype: byte order, kind, size, datetime unit; for a structured dtype
    each field's name, title, offset and dtype, and the item size."""
    if dt.names is not None:
        parts = []
        for name in dt.names:
            f = dt.fields[name]
            title = "" if len(f) < 3 else f"/{f[2]!r}"
            parts.append(f"{name!r}{title}@{f[1]}:{_dtype_tag(f[0])}")
        return "{" + ",".join(parts) + "}%d" % dt.itemsize
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return f"{shape!r}{_dtype_tag(base)}"
    return dt.str


def _meaningful_ranges(dt: Any) -> List[Tuple[int, int]]:
    """The byte ranges of one item of ``dt`` that hold its value: without the padding of
    aligned structured dtypes and of x87 extended precision (80 bits in 12 or 16 bytes)."""
    import numpy as np

    if dt.names is not None:
        out: List[Tuple[int, int]] = []
        for name in dt.names:
            fdt, off = dt.fields[name][:2]
            out += [(off + a, off + b) for a, b in _meaningful_ranges(fdt)]
        return _merge(out)
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        one = _meaningful_ranges(base)
        if one == [(0, base.itemsize)]:  # no padding in the items: all of it
            return [(0, dt.itemsize)]
        n = int(np.prod(shape, dtype=np.int64))
        return _merge([(i * base.itemsize + a, i * base.itemsize + b) for i in range(n) for a, b in one])
    if dt.type in (np.longdouble, np.clongdouble) and np.finfo(np.longdouble).nmant == 63:
        part = dt.itemsize // (2 if dt.kind == "c" else 1)
        if part > 10:  # x87: 10 significant bytes, at the low end unless big-endian
            lo = part - 10 if dt.byteorder == ">" else 0
            return [(p * part + lo, p * part + lo + 10) for p in range(dt.itemsize // part)]
    return [(0, dt.itemsize)] if dt.itemsize else []


def _merge(ranges: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif b > a:
            out.append((a, b))
    return out


def _hash_array(h: "hashlib._Hash", a: Any, tag: bytes = b"A") -> None:
    import numpy as np

    d = _dtype_tag(a.dtype).encode("utf-8", "surrogatepass")
    shape = ",".join(map(str, a.shape)).encode()
    h.update(tag + b"%d:" % len(d) + d + b"(" + shape + b")")
    if a.size == 0 or a.dtype.itemsize == 0:
        return
    ranges = _meaningful_ranges(a.dtype)
    whole = ranges == [(0, a.dtype.itemsize)]
    keep = None if whole else np.concatenate([np.arange(x, y) for x, y in ranges])
    for flat in _c_order_chunks(a):
        raw = flat.view(np.uint8)  # any dtype (datetime64 too: no buffer protocol needed)
        if keep is not None:  # only the meaningful bytes of each item
            raw = np.ascontiguousarray(raw.reshape(-1, a.dtype.itemsize)[:, keep])
        h.update(memoryview(raw).cast("B"))  # hashlib reads the buffer in place, GIL released


def _c_order_chunks(a: Any) -> Iterator[Any]:
    """``a``'s items in C order as 1-d contiguous arrays of bounded size (views when ``a``
    is C-contiguous, else copies of slabs along the first axis): Fortran-order and strided
    arrays hash like their C-ordered equals without a full copy."""
    import numpy as np

    itemsize = a.dtype.itemsize
    if a.flags.c_contiguous:
        flat = a.reshape(-1)
        step = max(1, _HASH_CHUNK // itemsize)
        for i in range(0, flat.shape[0], step):
            yield flat[i:i + step]
        return
    row_bytes = max(1, itemsize * int(np.prod(a.shape[1:], dtype=np.int64)))
    step = max(1, _HASH_CHUNK // row_bytes)
    for i in range(0, a.shape[0], step):
        yield np.ascontiguousarray(a[i:i + step]).reshape(-1)


def job_hash(name: str, version: str, kwargs: dict) -> str:
    """sha1 over the canonical encoding of (function name, version, arguments)."""
    h = hashlib.sha1(HASH_DOMAIN)
    hasher = _Hash(h)
    for part in (name, version):  # a str, as hi.function requires (visited as any value else)
        hasher.visit_str(part, None) if type(part) is str else hasher.visit(part, None)
    hasher.visit(kwargs, "kwargs")
    return h.hexdigest()

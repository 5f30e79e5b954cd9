"""Hypothesis strategies of hither values, and exact comparison, for property-based tests of
the job hash and of cache round trips (needs ``hypothesis``).

``hither_values()`` draws any value hither accepts (nested lists, tuples and dicts of
Python scalars, ``int``/``float``/``str`` subclasses and Enums, every numpy scalar kind,
arrays of every dtype kind including structured, aligned and x87 long double).
``equal_twin`` draws the same value in another memory layout (Fortran order, a strided
view, garbage in padding bytes, another dict order); ``different_value`` draws a value
that differs in value, type, dtype, shape or nesting. ``assert_exact(got, want)`` checks
type, dtype with its fields, shape and meaningful bytes. Example::

    from hypothesis import given
    from hither.testing.value_strategies import hither_values, assert_exact

    @given(hither_values())
    def test_round_trip(v):
        assert_exact(decode(encode(v, sink), source), v)

The classes below live at module level so that other processes can import them.
"""
from __future__ import annotations

import enum
import math
import struct
from typing import Any, Callable, List, Optional

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


class Color(str, enum.Enum):
    """A (str, Enum): ``str(Color.RED)`` is ``'Color.RED'``, its value ``'red'``."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.IntFlag):
    R = 4
    W = 2


class Tag(str):
    """A plain str subclass."""


class Count(int):
    """A plain int subclass."""


class Meters(float):
    """A plain float subclass."""


_X87 = np.finfo(np.longdouble).nmant == 63 and np.dtype(np.longdouble).itemsize > 10

#: dtypes of generated arrays and scalars: every kind hither accepts
SCALAR_DTYPES: List[np.dtype] = [np.dtype(t) for t in (
    "?", "i1", "u1", "<i2", ">i2", "<u4", "<i8", ">u8", "<f2", "<f4", ">f8", "<f8", "<c8",
    ">c16", np.longdouble, np.clongdouble, "<M8[s]", "<M8[D]", ">M8[ns]", "<m8[ms]", "<m8")]
STRING_DTYPES = [np.dtype(t) for t in ("<U3", ">U1", "S4", "S1")]
STRUCTURED_DTYPES = [
    np.dtype([("a", "u1"), ("b", "<f8")]),  # packed
    np.dtype([("a", "u1"), ("b", "<f8")], align=True),  # 7 padding bytes
    np.dtype([("t", "<M8[ms]"), ("x", "<i2", (2,)), ("s", "S3")], align=True),
    np.dtype([("ld", np.longdouble), ("inner", [("p", "u1"), ("q", "<i4")])], align=True),
]
RAW_VOID = np.dtype("V3")
ARRAY_DTYPES = SCALAR_DTYPES + STRING_DTYPES + STRUCTURED_DTYPES + [RAW_VOID]


def arrays(dtype: Any = None) -> st.SearchStrategy:
    """Arrays of ``dtype`` (default: any of ``ARRAY_DTYPES``), 0 to 3 dimensions."""
    dts = (st.sampled_from(ARRAY_DTYPES + STRUCTURED_DTYPES) if dtype is None
           else st.just(np.dtype(dtype)))
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)

    def build(dt: np.dtype) -> st.SearchStrategy:
        if dt == RAW_VOID:  # hypothesis has no strategy for raw bytes items
            return st.tuples(shapes, st.data()).map(
                lambda sd: _raw_void(sd[0], sd[1]))
        return hnp.arrays(dt, shapes)

    return dts.flatmap(build)


def _raw_void(shape: tuple, data: Any) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    raw = data.draw(st.binary(min_size=3 * n, max_size=3 * n))
    return np.frombuffer(raw, dtype=RAW_VOID).reshape(shape).copy()


def numpy_scalars() -> st.SearchStrategy:
    """One numpy scalar of every kind (structured ``np.void`` included)."""
    plain = st.sampled_from(SCALAR_DTYPES + STRUCTURED_DTYPES + STRUCTURED_DTYPES + [RAW_VOID]).flatmap(
        lambda dt: arrays(dt).filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0]))
    strs = texts(4).map(np.str_) | st.binary(max_size=4).map(np.bytes_)
    return st.sampled_from([plain, plain, strs]).flatmap(lambda kind: kind)


def subclass_values() -> st.SearchStrategy:
    """Enum members and instances of int/float/str subclasses."""
    return (st.sampled_from([Color.RED, Color.GREEN, Level.LOW, Level.HIGH, Perm.R, Perm.R | Perm.W])
            | texts(4).map(Tag) | st.integers().map(Count)
            | st.floats().map(Meters))


def texts(max_size: int = 6) -> st.SearchStrategy:
    """Strings, some with lone surrogates (as ``os.listdir`` gives for undecodable names)."""
    odd = st.characters() | st.characters(categories=["Cs"])  # st.text() drops surrogates
    return st.text(max_size=max_size) | st.lists(odd, max_size=max_size).map("".join)


def python_scalars() -> st.SearchStrategy:
    return (st.none() | st.booleans() | st.integers() | st.integers(min_value=2 ** 63)
            | st.floats() | texts())


def hither_values(max_leaves: int = 6) -> st.SearchStrategy:
    """Any value hither accepts as an argument or result (Files and Jobs aside)."""
    # one kind first, then a value of it: arrays and numpy scalars are drawn as often as
    # Python scalars (a plain one_of would flatten the many scalar branches and favour them)
    leaves = st.sampled_from([python_scalars(), subclass_values(), numpy_scalars(), arrays(),
                              arrays()]).flatmap(lambda kind: kind)
    return st.recursive(
        leaves,
        lambda children: (st.lists(children, max_size=3)
                          | st.lists(children, max_size=3).map(tuple)
                          | st.dictionaries(texts(3), children, max_size=3)),
        max_leaves=max_leaves)


# ------------------------------------------------------------------ twins and variants
def equal_twin(v: Any, data: Any) -> Any:
    """``v`` again, drawn in another layout: arrays Fortran-ordered, strided or with other
    bytes in their padding; dicts in another order; containers copied."""
    t = type(v)
    if t is list:
        return [equal_twin(x, data) for x in v]
    if t is tuple:
        return tuple(equal_twin(x, data) for x in v)
    if t is dict:
        return {k: equal_twin(v[k], data) for k in reversed(list(v))}
    if isinstance(v, np.ndarray):
        return _array_twin(v, data)
    if isinstance(v, np.generic) and (v.dtype.names is not None or v.dtype.type in
                                      (np.longdouble, np.clongdouble)):
        return _array_twin(np.asarray(v), data)[()]
    return v


def _array_twin(a: np.ndarray, data: Any) -> np.ndarray:
    how = data.draw(st.sampled_from(["fortran", "strided", "padding"]))
    if how == "fortran":  # (asfortranarray makes a 0-d array 1-d)
        return np.asfortranarray(a) if a.ndim else np.array(a, copy=True)
    if how == "strided":  # every other item of a bigger array
        big = np.empty(a.shape[:-1] + (2 * a.shape[-1],) if a.ndim else (2,), dtype=a.dtype)
        view = big[..., ::2] if a.ndim else big[::2].reshape(())
        view[...] = a
        return view
    # other bytes wherever the value does not live: random bytes, then the value's fields
    noise = data.draw(st.binary(min_size=a.nbytes, max_size=a.nbytes))
    twin = np.frombuffer(bytearray(noise), dtype=a.dtype).reshape(a.shape)
    if a.dtype.names is not None:
        _copy_fields(twin, a)
    elif a.dtype.type in (np.longdouble, np.clongdouble) and _X87 and a.size:
        twin = np.array(a, copy=True)
        u8 = twin.reshape(-1).view(np.uint8).reshape(a.size, -1)
        pad = np.frombuffer(noise[:u8.size], dtype=np.uint8).reshape(u8.shape)
        part = a.dtype.itemsize // (2 if a.dtype.kind == "c" else 1)
        for lo in range(0, a.dtype.itemsize, part):  # keep the 10 significant bytes of each
            u8[:, lo + 10:lo + part] = pad[:, lo + 10:lo + part]
    else:
        twin = np.array(a, copy=True)
    return twin


def _copy_fields(dst: np.ndarray, src: np.ndarray) -> None:
    if src.dtype.names is None:
        dst[...] = src
        return
    for name in src.dtype.names:
        _copy_fields(dst[name], src[name])


def _x87_bytes(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.reshape(-1).view(np.uint8).reshape(a.size, a.dtype.itemsize)[:, :10]


def different_values(v: Any) -> List[Any]:
    """Values that differ from ``v`` in value, type, dtype, shape or nesting (never equal
    to it as hither values)."""
    out: List[Any] = [[v], (v,), {"": v}]
    t = type(v)
    if t is list:
        out += [tuple(v), v + [None], v[:-1] if v else [[]]]
    elif t is tuple:
        out += [list(v), v + (None,)]
    elif t is dict:
        out += [list(v.values()), {**v, "\0new": None}]
        if v:
            k = next(iter(v))
            out.append({**v, k: [v[k]]})
    elif t is bool:
        out += [int(v), np.bool_(v), not v]
    elif t is int:
        out += [v + 1, str(v), Count(v), np.int64(v) if -2 ** 63 <= v < 2 ** 63 else -v - 1]
        if v in (0, 1):
            out.append(bool(v))
        if abs(v) < 2 ** 53:
            out.append(float(v))
    elif t is float:
        out += [np.float64(v), Meters(v), repr(v)]
        if math.isfinite(v) and v == int(v):
            out.append(int(v))
    elif t is str:
        out += [np.str_(v), Tag(v), v + "x", v.encode("utf-8", "surrogatepass").hex() + "#"]
    elif v is None:
        out += [0, "", False, [], {}]
    elif isinstance(v, enum.Enum):
        out += [v.value, str(v), v.name]
    elif isinstance(v, (Tag, Count, Meters)):
        base = type(v).__mro__[1]
        out.append(base(v))
    elif isinstance(v, np.ndarray):
        out += _array_variants(v)
    elif isinstance(v, (np.str_, np.bytes_)):
        longer = v + b"x" if isinstance(v, np.bytes_) else v + "x"
        out += [type(v)(longer)]
        if isinstance(v, np.str_):
            out.append(v.item())
    elif isinstance(v, np.generic):
        out += [_array_variants(np.asarray(v))[0], np.asarray(v)]
        if v.dtype.kind in "biuf":
            out.append(v.item())
    return out


def _array_variants(a: np.ndarray) -> List[Any]:
    out: List[Any] = []
    # another dtype, same item values where a cast can keep them
    other = np.dtype("<i8") if a.dtype != np.dtype("<i8") else np.dtype("<i4")
    try:
        out.append(a.astype(other) if a.dtype.names is None and a.dtype.kind not in "Vc"
                   else np.zeros(a.shape, other))
    except (TypeError, ValueError, OverflowError):
        out.append(np.zeros(a.shape, other))
    out.append(a.reshape(a.shape + (1,)))  # another shape
    if a.size:
        flipped = np.array(a, copy=True)
        _flip_meaningful_bit(flipped)
        out.append(flipped)
    return out


def _flip_meaningful_bit(a: np.ndarray) -> None:
    """Change item 0 of the C-contiguous ``a`` in a byte that holds its value."""
    a.reshape(-1).view(np.uint8)[_meaningful_offset(a.dtype)] ^= 1


def _meaningful_offset(dt: np.dtype) -> int:
    if dt.names is not None and dt.fields is not None:
        f = dt.fields[dt.names[0]]
        return f[1] + _meaningful_offset(f[0])
    if dt.subdtype is not None:
        return _meaningful_offset(dt.subdtype[0])
    if dt.byteorder == ">" and dt.kind not in "USV":
        return dt.itemsize - 1
    return 0


# ------------------------------------------------------------------ exact comparison
def assert_exact(got: Any, want: Any, path: str = "value") -> None:
    """``got`` is ``want`` as a hither value: same type at every level (tuple is not list,
    an Enum is not its value), same dict key order, floats bit for bit, arrays and numpy
    scalars with equal dtype (fields, offsets), shape and meaningful bytes."""
    assert type(got) is type(want) or (isinstance(want, np.ndarray) and type(got) is np.ndarray), \
        f"{path}: {type(got).__module__}.{type(got).__qualname__} is not " \
        f"{type(want).__module__}.{type(want).__qualname__}"
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_exact(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_exact(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.dtype.descr == want.dtype.descr, \
            f"{path}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{path}: shape {got.shape} != {want.shape}"
        assert meaningful_bytes(got) == meaningful_bytes(want), f"{path}: {got!r} != {want!r}"
    elif isinstance(want, (np.str_, np.bytes_)):
        assert got.dtype == want.dtype and got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, np.generic):
        assert_exact(np.asarray(got), np.asarray(want), path)
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def meaningful_bytes(a: np.ndarray) -> bytes:
    """The bytes that hold ``a``'s values, in C order: per field for structured dtypes
    (no padding), the 10 significant bytes of x87 long doubles."""
    a = np.ascontiguousarray(a)
    dt = a.dtype
    if dt.names is not None:
        return b"".join(meaningful_bytes(a[name]) for name in dt.names)
    if dt.type in (np.longdouble, np.clongdouble) and _X87:
        if dt.kind == "c":
            return meaningful_bytes(a.real) + meaningful_bytes(a.imag)
        return _x87_bytes(a).tobytes()
    return a.view(np.uint8).tobytes() if a.size else b""


def unmapped(v: Any, check: Optional[Callable[[np.memmap], None]] = None) -> Any:
    """``v`` with each memory map of a stored array (what ``StoredResult`` gives) seen as
    the ndarray it maps, for ``assert_exact``; ``check`` is called on each map first."""
    if isinstance(v, np.memmap):
        if check is not None:
            check(v)
        return np.asarray(v)
    if type(v) in (list, tuple):
        return type(v)(unmapped(x, check) for x in v)
    if type(v) is dict:
        return {k: unmapped(x, check) for k, x in v.items()}
    return v
